"""One app instance as the gateway sees it: its address, its load and its keep-alive pool.

Instance objects outlive snapshots that keep the instance, so counters and pooled
connections carry over; one the snapshot drops is marked removed and drains.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from courtyard.gateway._accesslog import quote

if TYPE_CHECKING:
    from courtyard.gateway._upstream import UpstreamConnection


class Instance:
    """An upstream instance with a LIFO pool of idle connections (warm sockets first)."""

    __slots__ = (
        "down_until",
        "host",
        "id",
        "idle",
        "log_id",
        "max_idle",
        "outstanding",
        "port",
        "removed",
        "revision",
    )

    def __init__(self, id: str, host: str, port: int, revision: int, max_idle: int) -> None:
        self.id = id
        self.host = host
        self.port = port
        self.revision = revision
        self.log_id = quote(id)
        self.max_idle = max_idle
        self.outstanding = 0  # requests picked this instance and have not finished
        self.down_until = 0.0  # passive health: skipped until then after a failed connect
        self.removed = False  # dropped by a snapshot: no new requests, pool closed
        self.idle: list[UpstreamConnection] = []

    def __repr__(self) -> str:
        return f"Instance({self.id!r}, {self.host}:{self.port}, outstanding={self.outstanding})"

    def take_idle(self) -> UpstreamConnection | None:
        """The most recently used idle connection still open, or None."""
        idle = self.idle
        while idle:
            conn = idle.pop()
            if conn.is_open and conn.transport is not None and not conn.transport.is_closing():
                return conn
        return None

    def put_idle(self, conn: UpstreamConnection, now: float) -> bool:
        """Keep ``conn`` for reuse; False (caller closes it) when removed or full."""
        if self.removed or len(self.idle) >= self.max_idle:
            return False
        conn.idle_since = now
        self.idle.append(conn)
        return True

    def forget(self, conn: UpstreamConnection) -> None:
        """Drop an idle connection that closed."""
        if conn in self.idle:
            self.idle.remove(conn)

    def expire_idle(self, before: float) -> None:
        """Close idle connections unused since ``before`` (the oldest sit at the bottom)."""
        idle = self.idle
        while idle and idle[0].idle_since < before:
            idle.pop(0).close()

    def close_idle(self) -> None:
        while self.idle:
            self.idle.pop().close()
