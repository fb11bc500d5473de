"""Errors of the lifecycle service (the tree is drawn in the package docstring)."""

from courtyard.core import CourtyardError


class LifecycleError(CourtyardError):
    """Root of the lifecycle service's errors."""


class AppNotDeployable(LifecycleError):
    """The app cannot run: an Interface has no process, or it has no bundle to run."""

    def __init__(self, app: str, reason: str) -> None:
        super().__init__(f"{app}: {reason}")
        self.app = app
        self.reason = reason


class DeployRefused(LifecycleError):
    """A deploy request that is not a bundle or a manifest."""


class NoEarlierRevision(LifecycleError):
    """A rollback asked for the revision before the first one."""

    def __init__(self, app: str, current: int) -> None:
        super().__init__(
            f"{app}: revision {current} is its first; there is nothing to roll back to"
        )
        self.app = app
