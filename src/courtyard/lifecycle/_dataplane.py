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

from courtyard.contracts import AppUpstream, GatewaySnapshot, Route, UpstreamInstance

log = logging.getLogger("courtyard.lifecycle")


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
        self, routes: list[Route], upstreams: Mapping[str, list[UpstreamInstance]]
    ) -> None:
        """Routes served by the platform itself (the API), ahead of any app route."""
        self._builtin_routes = list(routes)
        self._builtin_upstreams = dict(upstreams)

    def set_routes(self, routes: list[Route]) -> None:
        """Replace the app routes; takes effect at the next :meth:`sync`."""
        self._routes = list(routes)

    def snapshot(self, version: int) -> GatewaySnapshot:
        """The snapshot for the current routes and endpoints (pure apart from reading them)."""
        endpoints = self._endpoints()
        apps: dict[str, AppUpstream] = {}
        for route in (*self._builtin_routes, *self._routes):
            name = route["app"]
            if name not in apps:
                instances = self._builtin_upstreams.get(name) or endpoints.get(name) or []
                apps[name] = AppUpstream(name=name, instances=list(instances))
        return GatewaySnapshot(
            version=version, routes=[*self._builtin_routes, *self._routes], apps=apps
        )

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
