"""The route table: which app serves a (host, normalized path), as pure data and lookups.

Longest prefix wins; a route bound to a host beats a host-less one of the same length. Built
once per snapshot, so a lookup is a few dictionary probes.
"""

from __future__ import annotations

from dataclasses import dataclass

from courtyard.contracts import Route


@dataclass(frozen=True, slots=True)
class RouteEntry:
    """A snapshot route compiled for the hot path."""

    app: str
    prefix: bytes  # starts and ends with "/"
    host: bytes | None
    strip_prefix: bool
    max_body_bytes: int
    connect_timeout: float
    response_timeout: float
    prefix_header: bytes  # "X-Forwarded-Prefix: ...\r\n" when stripping, else b""
    label: str = "-"  # the route template as a metric label (the prefix)

    @classmethod
    def from_route(cls, route: Route) -> RouteEntry:
        prefix = route["path"].encode("ascii")
        host = route["host"]
        header = b""
        if route["strip_prefix"] and prefix != b"/":
            header = b"X-Forwarded-Prefix: " + prefix[:-1] + b"\r\n"
        return cls(
            app=route["app"],
            prefix=prefix,
            host=host.lower().encode("ascii") if host else None,
            strip_prefix=route["strip_prefix"],
            max_body_bytes=route["max_body_bytes"],
            connect_timeout=route["connect_timeout"],
            response_timeout=route["response_timeout"],
            prefix_header=header,
            label=route["path"],
        )

    def upstream_path(self, path: bytes) -> bytes:
        """The path the app sees: ``path`` less the prefix (keeping one "/") when stripping."""
        if self.strip_prefix:
            return path[len(self.prefix) - 1 :]
        return path


class RouteTable:
    """Longest-prefix lookup over one snapshot's routes."""

    __slots__ = ("_any", "_bare", "_by_host", "has_hosts")

    def __init__(self, routes: list[Route]) -> None:
        self._any: dict[bytes, RouteEntry] = {}
        self._by_host: dict[bytes, dict[bytes, RouteEntry]] = {}
        for route in routes:
            entry = RouteEntry.from_route(route)
            table = self._any if entry.host is None else self._by_host.setdefault(entry.host, {})
            # The first rule for a (host, prefix) wins; the catalog keeps them unique anyway.
            table.setdefault(entry.prefix, entry)
        self.has_hosts = bool(self._by_host)
        # Prefixes without their final slash: the paths that get a redirect.
        self._bare = {entry.prefix[:-1] for entry in self._entries()}

    def match(self, host: bytes | None, path: bytes) -> tuple[RouteEntry, bool] | None:
        """The route for ``host`` (a host_key) and normalized ``path``, or None.

        The flag is True when ``path`` is a route's prefix without its trailing slash: the
        answer is then a redirect to ``path + "/"``.
        """
        scoped = self._by_host.get(host) if host is not None and self.has_hosts else None
        general = self._any
        if path in self._bare:
            slashed = path + b"/"
            entry = (scoped.get(slashed) if scoped else None) or general.get(slashed)
            if entry is not None:
                return entry, True
        end = path.rfind(b"/") + 1
        while end > 0:
            prefix = path[:end]
            entry = (scoped.get(prefix) if scoped else None) or general.get(prefix)
            if entry is not None:
                return entry, False
            end = path.rfind(b"/", 0, end - 1) + 1
        return None

    def _entries(self) -> list[RouteEntry]:
        entries = list(self._any.values())
        for table in self._by_host.values():
            entries += table.values()
        return entries
