"""Why a catalog operation was refused, with the context a caller needs to explain it.

Error tree::

    CourtyardError
    └── CatalogError
        ├── AppNotFound           no app by that name
        ├── RevisionNotFound      the app has no revision by that number
        ├── ManifestInvalid       courtyard.yaml has mistakes (.problems: one per mistake)
        ├── RouteTaken            another app holds the route (.holder)
        ├── CapabilityTaken       another app provides the capability (.holder)
        └── BundleInvalid         an app bundle is unsafe, too large or incomplete
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from courtyard.core import CourtyardError


class CatalogError(CourtyardError):
    """Root of every error the catalog raises on purpose."""


class AppNotFound(CatalogError):
    """No app called ``name`` is in the catalog."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no app named {name!r} in the catalog")
        self.name = name


class RevisionNotFound(CatalogError):
    """The app exists but has no revision ``number``."""

    def __init__(self, app: str, number: int) -> None:
        super().__init__(f"app {app!r} has no revision {number}")
        self.app = app
        self.number = number


@dataclass(frozen=True)
class ManifestProblem:
    """One mistake in a manifest: the file, the field (dotted, YAML names) and what is wrong."""

    source: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.field}: {self.message}"


class ManifestInvalid(CatalogError):
    """A manifest was rejected; ``problems`` lists every mistake found, one per mistake."""

    def __init__(self, problems: Iterable[ManifestProblem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


class RouteTaken(CatalogError):
    """``route`` (``host/path``, or ``path`` for any host) already belongs to app ``holder``."""

    def __init__(self, route: str, holder: str) -> None:
        super().__init__(f"route {route} is already taken by app {holder!r}")
        self.route = route
        self.holder = holder


class CapabilityTaken(CatalogError):
    """Capability ``capability`` is already provided by app ``holder``."""

    def __init__(self, capability: str, holder: str) -> None:
        super().__init__(f"capability {capability!r} is already provided by app {holder!r}")
        self.capability = capability
        self.holder = holder


class BundleInvalid(CatalogError):
    """An app bundle was refused; ``reason`` says why in words a deployer can act on."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"invalid bundle: {reason}")
        self.reason = reason
