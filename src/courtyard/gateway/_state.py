"""What every connection of a worker shares: settings, the current routing table and mesh
policies, instances, counters, the access log and a coarse clock, plus applying snapshots and
the drain watch.

Swapping ``table`` is the only thing a snapshot does to running requests: each request
reads the table once, when it starts, and keeps the instance it picked.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from courtyard.contracts import GatewaySnapshot
from courtyard.core import Clock, SystemClock
from courtyard.gateway._access import AccessGate
from courtyard.gateway._accesslog import AccessLog
from courtyard.gateway._balancer import Balancer
from courtyard.gateway._config import GatewayConfig
from courtyard.gateway._headers import IdSource
from courtyard.gateway._mesh import MeshGate
from courtyard.gateway._metrics import Metrics
from courtyard.gateway._paths import host_key
from courtyard.gateway._pool import Instance
from courtyard.gateway._routing import RouteEntry, RouteTable

if TYPE_CHECKING:
    from courtyard.gateway._proxy import ClientConnection

log = logging.getLogger("courtyard.gateway")

InstanceKey = tuple[str, str, int]
# (normalized path, query, host, route or None, redirect, upstream target)
Resolution = tuple[bytes, bytes, bytes | None, RouteEntry | None, bool, bytes]


class Table:
    """One snapshot compiled: routes and a balancer per app (replaced whole, never edited)."""

    __slots__ = ("balancers", "resolved", "routes", "version")

    def __init__(self, version: int, routes: RouteTable, balancers: dict[str, Balancer]) -> None:
        self.version = version
        self.routes = routes
        self.balancers = balancers
        # (target, Host field) -> Resolution: pure results, so safe to memoize per table.
        self.resolved: dict[tuple[bytes, bytes | None], Resolution] = {}


@dataclass
class _Drain:
    version: int
    pending: set[Instance]
    deadline: float


@dataclass
class GatewayState:
    """Shared by the protocols of one worker (one event loop: no locks)."""

    config: GatewayConfig
    clock: Clock
    loop: asyncio.AbstractEventLoop
    access_log: AccessLog | None = None
    on_drained: Callable[[int], None] | None = None
    metrics: Metrics = field(default_factory=Metrics)
    ids: IdSource = field(default_factory=IdSource)
    access: AccessGate = field(default_factory=AccessGate)
    mesh: MeshGate = field(default_factory=MeshGate)
    table: Table = field(default_factory=lambda: Table(0, RouteTable([]), {}))
    instances: dict[InstanceKey, Instance] = field(default_factory=dict)
    connections: set[ClientConnection] = field(default_factory=set)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    stopping: bool = False
    drained_version: int = 0
    now: float = 0.0  # coarse monotonic time, refreshed by the sweep
    wall_offset: float = 0.0  # wall clock minus monotonic clock
    date: bytes = b""  # "Date: ...\r\n" for the gateway's own answers (RFC 9110 §6.6.1)
    _second: int = -1
    _drains: list[_Drain] = field(default_factory=list)
    hosts: dict[bytes, bytes] = field(default_factory=dict)  # Host value -> host_key

    def __post_init__(self) -> None:
        # The hot path calls this once or twice per request; skip a Python frame for the
        # real clock.
        clock = self.clock
        self.monotonic: Callable[[], float] = (
            time.monotonic if isinstance(clock, SystemClock) else clock.monotonic
        )
        self.tick()

    def tick(self) -> float:
        """Refresh the coarse clock and the Date line; returns now."""
        now = self.monotonic()
        self.now = now
        wall = self.clock.time()
        self.wall_offset = wall - now
        second = int(wall)
        if second != self._second:
            self._second = second
            self.date = b"Date: " + email.utils.formatdate(wall, usegmt=True).encode() + b"\r\n"
        return now

    def host_key(self, host: bytes) -> bytes:
        """Cached host_key (clients repeat the same few Host values)."""
        key = self.hosts.get(host)
        if key is None:
            key = host_key(host)  # raises InvalidTarget
            if len(self.hosts) > 1024:
                self.hosts.clear()
            self.hosts[host] = key
        return key

    # -- snapshots -----------------------------------------------------------------------

    def apply(self, snapshot: GatewaySnapshot) -> None:
        """Swap in ``snapshot``; instances it drops drain, then ``on_drained`` is called."""
        max_idle = self.config.max_idle_per_instance
        old = self.instances
        instances: dict[InstanceKey, Instance] = {}
        balancers: dict[str, Balancer] = {}
        for name, upstream in snapshot["apps"].items():
            members: list[Instance] = []
            for item in upstream["instances"]:
                key = (item["id"], item["host"], int(item["port"]))
                instance = instances.get(key) or old.get(key)
                if instance is None:
                    instance = Instance(item["id"], item["host"], int(item["port"]), 0, max_idle)
                instance.revision = int(item["revision"])
                instance.down_until = 0.0  # a new snapshot is fresh news about health
                instances[key] = instance
                members.append(instance)
            balancers[name] = Balancer(members)
        table = Table(snapshot["version"], RouteTable(snapshot["routes"]), balancers)
        removed = [instance for key, instance in old.items() if key not in instances]
        for instance in removed:
            instance.removed = True
            instance.close_idle()
        self.instances = instances
        self.access.apply_snapshot(snapshot)
        self.mesh.apply_snapshot(snapshot)
        self.table = table  # the swap: one assignment
        busy = {instance for instance in removed if instance.outstanding > 0}
        self._drains.append(_Drain(snapshot["version"], busy, self.now + self.config.drain_timeout))
        self.report_drained()

    def settled(self, instance: Instance) -> None:
        """A removed instance has no request in flight any more."""
        for drain in self._drains:
            drain.pending.discard(instance)
        self.report_drained()

    def report_drained(self) -> None:
        """Report drained versions in order: a version counts only after every earlier one."""
        drains = self._drains
        while drains and (not drains[0].pending or drains[0].deadline <= self.now):
            version = drains.pop(0).version
            self.drained_version = max(self.drained_version, version)
            if self.on_drained is not None:
                self.on_drained(version)

    def sweep(self) -> None:
        """Enforce every deadline (one timer per worker rather than one per request)."""
        now = self.tick()
        for conn in [c for c in self.connections if c.deadline <= now]:
            try:
                conn.on_deadline(now)
            except Exception:  # one broken connection must not stop every timeout
                log.exception("gateway: a connection failed to time out cleanly")
                if conn.transport is not None:
                    conn.transport.abort()
        before = now - self.config.pool_idle_timeout
        for instance in self.instances.values():
            if instance.idle and instance.idle[0].idle_since < before:
                instance.expire_idle(before)
        if self._drains:
            self.report_drained()
        if self.access_log is not None:
            self.access_log.flush()
