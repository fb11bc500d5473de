"""Least-outstanding-requests choice among an app's ready instances.

Ties go round-robin (the scan starts one further each time), and instances that just refused
a connection are skipped until their down mark expires (passive health checking).
"""

from __future__ import annotations

from collections.abc import Collection

from courtyard.gateway._pool import Instance


class Balancer:
    """Picks an instance of one app for each request."""

    __slots__ = ("_next", "instances")

    def __init__(self, instances: list[Instance]) -> None:
        self.instances = instances
        self._next = 0

    def pick(self, now: float, exclude: Collection[Instance] = ()) -> Instance | None:
        """The available instance with the fewest requests in flight, or None."""
        instances = self.instances
        count = len(instances)
        if count == 1:
            only = instances[0]
            if only.down_until > now or only in exclude:
                return None
            return only
        start = self._next
        self._next = start + 1 if start + 1 < count else 0
        best: Instance | None = None
        least = 1 << 62
        for offset in range(count):
            index = start + offset
            candidate = instances[index if index < count else index - count]
            if candidate.outstanding < least and candidate.down_until <= now:
                if exclude and candidate in exclude:
                    continue
                best = candidate
                least = candidate.outstanding
        return best
