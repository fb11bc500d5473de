"""Where the catalog keeps its state: the ``CatalogStore`` protocol and its in-memory backend.

Each store method is one atomic step (a register either writes everything or nothing), so the
fleet-wide uniqueness of routes and capabilities holds under concurrent callers.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Protocol

from courtyard.catalog._errors import (
    AppNotFound,
    CapabilityTaken,
    CatalogError,
    RevisionNotFound,
    RouteTaken,
)
from courtyard.catalog._manifest import Manifest
from courtyard.catalog._models import (
    App,
    DesiredState,
    Registration,
    Revision,
    RouteKey,
    make_app,
    route_keys,
    show_route,
)


class CatalogStore(Protocol):
    """Persistence of apps, revisions and claims; every method is atomic and thread-safe.

    Methods are synchronous: :class:`Catalog` runs them in a worker thread.
    """

    def register(
        self, manifest: Manifest, digest: str, bundle_digest: str | None, now: float
    ) -> Registration:
        """Add a revision and make it current, or report the current one if ``digest`` matches.

        Replaces the app's routes and capabilities in the same step; raises RouteTaken or
        CapabilityTaken (writing nothing) when another app holds one of them.
        """
        ...

    def get(self, name: str) -> App:
        """The app called ``name``; raises AppNotFound."""
        ...

    def list(self) -> builtins.list[App]:
        """Every app, sorted by name."""
        ...

    def revisions(self, name: str) -> builtins.list[Revision]:
        """Every revision of the app, oldest first; raises AppNotFound."""
        ...

    def revision(self, name: str, number: int) -> Revision:
        """One revision; raises AppNotFound or RevisionNotFound."""
        ...

    def set_current(self, name: str, number: int, now: float) -> App:
        """Make revision ``number`` current, taking over its routes and capabilities."""
        ...

    def set_desired(self, name: str, state: DesiredState, now: float) -> App:
        """Record whether the app should be running."""
        ...

    def remove(self, name: str) -> None:
        """Delete the app, its revisions, routes and capabilities; raises AppNotFound."""
        ...


def find_conflict(
    name: str,
    manifest: Manifest,
    route_holders: Mapping[RouteKey, str],
    capability_holders: Mapping[str, str],
) -> CatalogError | None:
    """The first claim of ``manifest`` held by an app other than ``name`` (routes first)."""
    for key in route_keys(manifest):
        holder = route_holders.get(key)
        if holder is not None and holder != name:
            return RouteTaken(show_route(key), holder)
    for capability in manifest.spec.provides:
        holder = capability_holders.get(capability)
        if holder is not None and holder != name:
            return CapabilityTaken(capability, holder)
    return None


@dataclass(frozen=True)
class _Entry:
    revisions: tuple[Revision, ...]
    current: int
    desired: DesiredState
    created_at: float
    updated_at: float

    def app(self) -> App:
        return make_app(
            self.revisions[self.current - 1].manifest,
            current_revision=self.current,
            desired_state=self.desired,
            created_at=self.created_at,
            updated_at=self.updated_at,
        )


class MemoryCatalogStore:
    """A catalog store in a dict behind a lock: for tests and throw-away dev nodes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._routes: dict[RouteKey, str] = {}
        self._capabilities: dict[str, str] = {}

    def register(
        self, manifest: Manifest, digest: str, bundle_digest: str | None, now: float
    ) -> Registration:
        name = manifest.name
        with self._lock:
            entry = self._entries.get(name)
            if entry is not None:
                current = entry.revisions[entry.current - 1]
                if current.digest == digest:
                    return Registration(entry.app(), current, created=False)
            conflict = find_conflict(name, manifest, self._routes, self._capabilities)
            if conflict is not None:
                raise conflict
            number = len(entry.revisions) + 1 if entry else 1
            revision = Revision(name, number, digest, bundle_digest, manifest, now)
            if entry is None:
                entry = _Entry((revision,), number, "running", now, now)
            else:
                entry = replace(
                    entry, revisions=(*entry.revisions, revision), current=number, updated_at=now
                )
            self._entries[name] = entry
            self._claim(name, manifest)
            return Registration(entry.app(), revision, created=True)

    def get(self, name: str) -> App:
        with self._lock:
            return self._entry(name).app()

    def list(self) -> builtins.list[App]:
        with self._lock:
            return [self._entries[name].app() for name in sorted(self._entries)]

    def revisions(self, name: str) -> builtins.list[Revision]:
        with self._lock:
            return builtins.list(self._entry(name).revisions)

    def revision(self, name: str, number: int) -> Revision:
        with self._lock:
            entry = self._entry(name)
            if not 1 <= number <= len(entry.revisions):
                raise RevisionNotFound(name, number)
            return entry.revisions[number - 1]

    def set_current(self, name: str, number: int, now: float) -> App:
        with self._lock:
            entry = self._entry(name)
            if not 1 <= number <= len(entry.revisions):
                raise RevisionNotFound(name, number)
            if number == entry.current:
                return entry.app()
            manifest = entry.revisions[number - 1].manifest
            conflict = find_conflict(name, manifest, self._routes, self._capabilities)
            if conflict is not None:
                raise conflict
            entry = replace(entry, current=number, updated_at=now)
            self._entries[name] = entry
            self._claim(name, manifest)
            return entry.app()

    def set_desired(self, name: str, state: DesiredState, now: float) -> App:
        with self._lock:
            entry = replace(self._entry(name), desired=state, updated_at=now)
            self._entries[name] = entry
            return entry.app()

    def remove(self, name: str) -> None:
        with self._lock:
            self._entry(name)
            del self._entries[name]
            self._release(name)

    def _entry(self, name: str) -> _Entry:
        entry = self._entries.get(name)
        if entry is None:
            raise AppNotFound(name)
        return entry

    def _claim(self, name: str, manifest: Manifest) -> None:
        self._release(name)
        self._routes.update(dict.fromkeys(route_keys(manifest), name))
        self._capabilities.update(dict.fromkeys(manifest.spec.provides, name))

    def _release(self, name: str) -> None:
        self._routes = {key: app for key, app in self._routes.items() if app != name}
        self._capabilities = {key: app for key, app in self._capabilities.items() if app != name}
