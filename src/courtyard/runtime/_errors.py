"""Errors the runtime supervisor raises on purpose, each with a ``str`` meant for people.

Error tree::

    CourtyardError
    └── SupervisorError
        ├── AppNotRunning       the supervisor knows no such app
        ├── InvalidSpec         a WorkloadSpec that cannot run (bad name, empty command, ...)
        ├── PlaceholderError    a ${NAME} with no value, or a stray "$"
        └── RolloutFailed       new instances did not become ready; the old ones keep serving
"""

from __future__ import annotations

from collections.abc import Sequence

from courtyard.core import CourtyardError


class SupervisorError(CourtyardError):
    """Root of the runtime supervisor's errors."""


class AppNotRunning(SupervisorError):
    """The supervisor has no such app (never applied, or removed)."""

    def __init__(self, app: str) -> None:
        super().__init__(f"app {app!r} is not running on this node")
        self.app = app


class InvalidSpec(SupervisorError):
    """A workload spec that cannot run; nothing was started."""

    def __init__(self, app: str, reason: str) -> None:
        super().__init__(f"{app}: {reason}")
        self.app = app
        self.reason = reason


class PlaceholderError(SupervisorError):
    """A placeholder with no value, or a ``$`` that starts no placeholder."""

    def __init__(self, name: str, template: str, reason: str | None = None) -> None:
        super().__init__(reason or f"unknown placeholder ${{{name}}} in {template!r}")
        self.name = name
        self.template = template


class RolloutFailed(SupervisorError):
    """New instances were not ready in time; they were stopped, the old ones keep serving."""

    def __init__(
        self,
        app: str,
        revision: int,
        reason: str,
        *,
        instance: str | None = None,
        log_tail: Sequence[str] = (),
    ) -> None:
        message = f"rollout of {app} revision {revision} failed: {reason}"
        if log_tail:
            message += "\nlast log lines:\n" + "\n".join(f"  {line}" for line in log_tail)
        super().__init__(message)
        self.app = app
        self.revision = revision
        self.reason = reason
        self.instance = instance
        self.log_tail = tuple(log_tail)
