"""The catalog service: the async face of a :class:`CatalogStore`, with time and digests.

Store calls block (SQLite, PostgreSQL), so each runs in a worker thread; the event loop never
waits on the database.
"""

from __future__ import annotations

import asyncio
import builtins
import re

from courtyard.catalog._errors import BundleInvalid
from courtyard.catalog._manifest import Manifest
from courtyard.catalog._models import App, DesiredState, Registration, Revision, revision_digest
from courtyard.catalog._store import CatalogStore
from courtyard.core import Clock, SystemClock

_DIGEST = re.compile(r"[0-9a-f]{64}")


class Catalog:
    """Every app in the fleet, its revisions, and the routes and capabilities it holds."""

    def __init__(self, store: CatalogStore, *, clock: Clock | None = None) -> None:
        self._store = store
        self._clock = clock if clock is not None else SystemClock()

    async def register(self, manifest: Manifest, bundle_digest: str | None = None) -> Registration:
        """Deploy ``manifest`` (and the bundle with ``bundle_digest``) as the app's new revision.

        Deploying what is already current creates nothing (``created`` False). Raises
        RouteTaken or CapabilityTaken, writing nothing, when another app holds a claim.
        """
        if bundle_digest is not None and _DIGEST.fullmatch(bundle_digest) is None:
            raise BundleInvalid(
                f"bundle digest must be 64 lower-case hex digits: {bundle_digest!r}"
            )
        digest = revision_digest(manifest, bundle_digest)
        now = self._clock.time()
        return await asyncio.to_thread(self._store.register, manifest, digest, bundle_digest, now)

    async def get(self, name: str) -> App:
        """The app called ``name``; raises AppNotFound."""
        return await asyncio.to_thread(self._store.get, name)

    async def list(self) -> builtins.list[App]:
        """Every app, sorted by name."""
        return await asyncio.to_thread(self._store.list)

    async def revisions(self, name: str) -> builtins.list[Revision]:
        """The app's revisions, oldest first; raises AppNotFound."""
        return await asyncio.to_thread(self._store.revisions, name)

    async def revision(self, name: str, number: int) -> Revision:
        """One revision; raises AppNotFound or RevisionNotFound."""
        return await asyncio.to_thread(self._store.revision, name, number)

    async def set_current(self, name: str, number: int) -> App:
        """Make an earlier (or later) revision current: a rollback, as far as the catalog goes.

        Its routes and capabilities replace the current ones; raises RouteTaken or
        CapabilityTaken if another app took one of them meanwhile.
        """
        now = self._clock.time()
        return await asyncio.to_thread(self._store.set_current, name, number, now)

    async def set_desired(self, name: str, state: DesiredState) -> App:
        """Record whether the app should run (``"running"``) or not (``"stopped"``)."""
        if state not in ("running", "stopped"):
            raise ValueError(f"desired state must be 'running' or 'stopped', got {state!r}")
        now = self._clock.time()
        return await asyncio.to_thread(self._store.set_desired, name, state, now)

    async def remove(self, name: str) -> None:
        """Delete the app with all its revisions, routes and capabilities.

        Registering the name again later starts afresh at revision 1.
        """
        await asyncio.to_thread(self._store.remove, name)
