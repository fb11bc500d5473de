"""The runtime supervisor, local-process backend: runs app instances as child processes.

It starts, health-checks, restarts, scales, drains and stops instances, and tells the data
plane (through a :class:`TrafficSwitch`) which ones may take traffic. With a
:class:`CredentialIssuer` it also keeps each instance's mesh credential file fresh. See
docs/runtime.md.

Error tree::

    CourtyardError
    └── SupervisorError
        ├── AppNotRunning
        ├── InvalidSpec
        ├── PlaceholderError
        └── RolloutFailed
"""

from courtyard.runtime._backoff import backoff_delay, is_crash_loop
from courtyard.runtime._config import RuntimeConfig
from courtyard.runtime._errors import (
    AppNotRunning,
    InvalidSpec,
    PlaceholderError,
    RolloutFailed,
    SupervisorError,
)
from courtyard.runtime._launcher import (
    LaunchRequest,
    LocalProcessLauncher,
    OutputSink,
    ProcessHandle,
    ProcessLauncher,
)
from courtyard.runtime._logs import parse_log_line
from courtyard.runtime._models import (
    AppPhase,
    AppState,
    InstanceState,
    InstanceStatus,
    TrafficSwitch,
    WorkloadSpec,
)
from courtyard.runtime._placeholders import expand_placeholders
from courtyard.runtime._supervisor import Supervisor
from courtyard.runtime._workload import CREDENTIAL_FILE, CredentialIssuer, IssuedCredential

__all__ = [
    "CREDENTIAL_FILE",
    "AppNotRunning",
    "AppPhase",
    "AppState",
    "CredentialIssuer",
    "InstanceState",
    "InstanceStatus",
    "InvalidSpec",
    "IssuedCredential",
    "LaunchRequest",
    "LocalProcessLauncher",
    "OutputSink",
    "PlaceholderError",
    "ProcessHandle",
    "ProcessLauncher",
    "RolloutFailed",
    "RuntimeConfig",
    "Supervisor",
    "SupervisorError",
    "TrafficSwitch",
    "WorkloadSpec",
    "backoff_delay",
    "expand_placeholders",
    "is_crash_loop",
    "parse_log_line",
]
