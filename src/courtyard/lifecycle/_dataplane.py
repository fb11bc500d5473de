"""Keeps the gateway workers' snapshot equal to the catalog's routes plus the ready instances.

The runtime calls :meth:`DataPlane.sync` whenever its endpoints change and, during a rolling
replacement, waits for it: it returns only once every worker has stopped sending traffic to
instances that left the snapshot, so the old instances can be stopped without a lost request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Protocol

from courtyard.contracts import (
    AccessPolicy,
    AppUpstream,
    GatewayAuth,
    GatewaySnapshot,
    MeshPolicy,
    MeshSettings,
    Route,
    UpstreamInstance,
)

log = logging.getLogger("courtyard.lifecycle")

_PUBLIC = AccessPolicy(public=True, allow=[])
_NOBODY = AccessPolicy(public=False, allow=[])


class SnapshotPublisher(Protocol):
    """Where snapshots go (the control channel in a node, a list in tests)."""

    async def publish(self, snapshot: GatewaySnapshot) -> None: ...

    async def wait_drained(self, version: int, timeout: float) -> bool: ...


class DataPlane:
    """Builds snapshots and publishes them, one at a time, with increasing versions."""

    def __init__(
        self,
        publisher: SnapshotPublisher,
        *,
        builtin_routes: list[Route] | None = None,
        builtin_upstreams: Mapping[str, list[UpstreamInstance]] | None = None,
        drain_timeout: float = 30.0,
    ) -> None:
        self._publisher = publisher
        self._builtin_routes = list(builtin_routes or [])
        self._builtin_upstreams = dict(builtin_upstreams or {})
        self._routes: list[Route] = []
        self._access: dict[str, AccessPolicy] = {}
        self._mesh: dict[str, MeshPolicy] = {}
        self._mesh_settings: MeshSettings | None = None
        self._builtin_access: dict[str, AccessPolicy] = {}
        self._auth: GatewayAuth | None = None
        self._endpoints: Callable[[], Mapping[str, list[UpstreamInstance]]] = dict
        self._drain_timeout = drain_timeout
        self._version = 0
        self._lock = asyncio.Lock()

    @property
    def version(self) -> int:
        """The version of the last published snapshot."""
        return self._version

    def bind_endpoints(self, source: Callable[[], Mapping[str, list[UpstreamInstance]]]) -> None:
        """Name where ready instances come from (the runtime supervisor's ``endpoints``)."""
        self._endpoints = source

    def set_builtin(
        self,
        routes: list[Route],
        upstreams: Mapping[str, list[UpstreamInstance]],
        access: Mapping[str, AccessPolicy] | None = None,
    ) -> None:
        """Routes served by the platform itself (the API, the portal), ahead of any app route.

        A built-in app is public unless ``access`` says otherwise: it authenticates callers
        itself."""
        self._builtin_routes = list(routes)
        self._builtin_upstreams = dict(upstreams)
        self._builtin_access = dict(access or {})

    def set_routes(
        self,
        routes: list[Route],
        access: Mapping[str, AccessPolicy] | None = None,
        mesh: Mapping[str, MeshPolicy] | None = None,
    ) -> None:
        """Replace the app routes, who may open each app and each app's mesh policy; takes
        effect at the next :meth:`sync`. An app missing from ``access`` admits nobody, one
        missing from ``mesh`` may neither call nor be called (default deny). An app with a
        mesh policy is in the snapshot even without a route: it may be reachable only
        through the mesh."""
        self._routes = list(routes)
        self._access = dict(access or {})
        self._mesh = dict(mesh or {})

    def mesh_policies(self) -> dict[str, MeshPolicy]:
        """Every app's mesh policy as the gateway enforces it now (a copy)."""
        return dict(self._mesh)

    def set_mesh(self, settings: MeshSettings | None) -> None:
        """The mesh listener's settings (None: the snapshot names no mesh); takes effect at
        the next :meth:`sync`."""
        self._mesh_settings = settings

    def set_auth(self, auth: GatewayAuth | None) -> None:
        """The identity settings the gateway authenticates with (keys, issuer, cookie)."""
        self._auth = auth

    def snapshot(self, version: int) -> GatewaySnapshot:
        """The snapshot for the current routes and endpoints (pure apart from reading them)."""
        endpoints = self._endpoints()
        apps: dict[str, AppUpstream] = {}
        for route in self._builtin_routes:
            name = route["app"]
            if name not in apps:
                access = self._builtin_access.get(name, _PUBLIC)
                instances = self._builtin_upstreams.get(name) or []
                apps[name] = AppUpstream(name=name, instances=list(instances), access=access)
        names = [route["app"] for route in self._routes]
        names.extend(name for name in self._mesh if name not in apps)
        for name in names:
            if name not in apps:
                access = self._access.get(name, _NOBODY)
                instances = endpoints.get(name) or []
                upstream = AppUpstream(name=name, instances=list(instances), access=access)
                policy = self._mesh.get(name)
                if policy is not None:
                    upstream["mesh"] = policy
                apps[name] = upstream
        snapshot = GatewaySnapshot(
            version=version,
            routes=[*self._builtin_routes, *self._routes],
            apps=apps,
            auth=self._auth,
        )
        if self._mesh_settings is not None:
            snapshot["mesh"] = self._mesh_settings
        return snapshot

    async def sync(self) -> None:
        """Publish a fresh snapshot and wait until every worker has drained the old one."""
        async with self._lock:
            self._version += 1
            version = self._version
            await self._publisher.publish(self.snapshot(version))
        if not await self._publisher.wait_drained(version, self._drain_timeout):
            log.warning(
                "gateway workers did not drain snapshot %d within %.0f s; continuing",
                version,
                self._drain_timeout,
            )
