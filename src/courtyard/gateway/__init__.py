"""The gateway (data plane): an asyncio/uvloop/httptools HTTP/1.1 reverse proxy that routes
the one public port to the fleet's app instances by the snapshot the control plane pushes.

Error tree::

    GatewayError
    ├── InvalidSnapshot
    └── InvalidTarget
"""

from courtyard.gateway._config import (
    GatewayConfig,
    GatewayError,
    InvalidSnapshot,
    InvalidTarget,
)
from courtyard.gateway._metrics import render_metrics
from courtyard.gateway._paths import normalize_path, split_target
from courtyard.gateway._server import Gateway
from courtyard.gateway._snapshots import check_snapshot, load_snapshot
from courtyard.gateway._worker import WorkerOptions, main, run_worker

__all__ = [
    "Gateway",
    "GatewayConfig",
    "GatewayError",
    "InvalidSnapshot",
    "InvalidTarget",
    "WorkerOptions",
    "check_snapshot",
    "load_snapshot",
    "main",
    "normalize_path",
    "render_metrics",
    "run_worker",
    "split_target",
]
