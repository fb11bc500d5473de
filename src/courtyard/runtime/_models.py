"""What the supervisor is asked to run and what it reports back: plain frozen data."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

InstanceState = Literal[
    "starting", "ready", "unhealthy", "draining", "stopping", "exited", "backoff"
]
AppPhase = Literal[
    "starting", "running", "rolling-out", "degraded", "crash-loop", "stopped", "failed"
]


@dataclass(frozen=True)
class WorkloadSpec:
    """One revision of an app as the runtime runs it."""

    app: str
    revision: int
    bundle: Path | None  # folder copied as each instance's working directory (None: empty)
    command: tuple[str, ...]  # may contain ${PORT} and ${VAR} placeholders ($$ = literal $)
    env: Mapping[str, str] = field(default_factory=dict)  # values may hold placeholders too
    replicas: int = 1
    health_path: str | None = "/healthz"  # None: ready when the port accepts TCP
    health_interval: float | None = None  # None: RuntimeConfig.health_interval
    health_timeout: float = 2.0
    failure_threshold: int = 3  # consecutive failed liveness checks -> restart
    ready_timeout: float = 30.0  # a new instance not ready by then -> the rollout fails
    drain_timeout: float = 30.0  # longest wait for the data plane to drain old instances
    memory_bytes: int | None = None
    cpu_millis: int | None = None


@dataclass(frozen=True)
class InstanceStatus:
    """One instance as seen at one moment."""

    id: str
    app: str
    revision: int
    pid: int | None
    port: int
    state: InstanceState
    restarts: int
    started_at: float | None  # wall time of the current process's start
    last_exit: int | None  # exit code of the previous process; -N: killed by signal N
    limits: str = ""  # how memory/CPU limits are enforced, or that they are not


@dataclass(frozen=True)
class AppState:
    """One app as seen at one moment."""

    app: str
    revision: int  # the serving revision (the attempted one while nothing serves)
    phase: AppPhase
    desired_replicas: int
    ready_replicas: int
    restarts: int  # restarts of the current instances
    message: str = ""


def instance_id_pattern(app: str) -> str:
    """A regex matching the ids of ``app``'s instances: ``<app>-<revision>-<6 hex digits>``."""
    return rf"{re.escape(app)}-\d+-[0-9a-f]{{6}}"


class TrafficSwitch(Protocol):
    """The data plane as the supervisor sees it."""

    async def sync(self) -> None:
        """Publish the supervisor's current endpoints() to the data plane and return once no
        gateway worker sends traffic to an instance no longer listed (drained)."""
        ...
