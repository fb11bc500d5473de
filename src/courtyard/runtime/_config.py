"""Settings of the runtime supervisor, frozen and read once by the node at start."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class RuntimeConfig:
    """Where instances live and how hard the supervisor tries to keep them up.

    ``data_dir`` holds ``instances/<id>/`` (working copies), ``logs/<app>/<id>.log`` and
    ``run/instances/<id>.json`` (the records that let a restarted node find orphans).
    """

    data_dir: Path
    node_id: str  # identifies this node's processes in the run records
    platform_url: str  # given to apps as COURTYARD_PLATFORM_URL
    # Given to apps as COURTYARD_MESH_URL when the supervisor has a credential issuer.
    mesh_url: str | None = None
    restart_backoff_base: float = 0.5
    restart_backoff_max: float = 30.0
    crash_loop_restarts: int = 5  # this many restarts within crash_loop_window -> "crash-loop"
    crash_loop_window: float = 60.0
    stop_grace: float = 10.0  # SIGTERM -> SIGKILL
    health_interval: float = 1.0  # default when a spec sets none
    log_max_bytes: int = 10 * 1024 * 1024
    log_backups: int = 3
    extra_env: Mapping[str, str] = field(default_factory=dict)  # added to every instance env

    @property
    def instances_dir(self) -> Path:
        """Working copies, one folder per instance."""
        return self.data_dir / "instances"

    @property
    def logs_dir(self) -> Path:
        """Instance logs, one folder per app."""
        return self.data_dir / "logs"

    @property
    def records_dir(self) -> Path:
        """Durable records of started processes (for orphan cleanup)."""
        return self.data_dir / "run" / "instances"
