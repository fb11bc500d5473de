"""Where the minute series survive a restart of the control plane: a Protocol, and the
in-memory store used by tests and by nodes that keep no history."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Protocol

from courtyard.telemetry._series import MinuteRow


class MinuteStore(Protocol):
    """Saved minutes per app; methods are synchronous and thread-safe (the telemetry service
    runs them in a worker thread)."""

    def save(self, rows: Sequence[MinuteRow]) -> None:
        """Insert the rows, replacing any saved row of the same (app, minute)."""
        ...

    def load(self, since: int, app: str | None = None) -> list[MinuteRow]:
        """Rows of minute ``since`` or later (of one app, or all), by app then minute."""
        ...

    def prune(self, before: int) -> None:
        """Delete the rows older than minute ``before``."""
        ...

    def remove(self, app: str) -> None:
        """Delete every row of ``app``."""
        ...


class MemoryMinuteStore:
    """A :class:`MinuteStore` in a dict."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, int], MinuteRow] = {}
        self._lock = threading.Lock()

    def save(self, rows: Sequence[MinuteRow]) -> None:
        with self._lock:
            for row in rows:
                self._rows[row.app, row.minute] = row

    def load(self, since: int, app: str | None = None) -> list[MinuteRow]:
        with self._lock:
            rows = [
                row
                for row in self._rows.values()
                if row.minute >= since and (app is None or row.app == app)
            ]
        return sorted(rows, key=lambda r: (r.app, r.minute))

    def prune(self, before: int) -> None:
        with self._lock:
            for key in [k for k in self._rows if k[1] < before]:
                del self._rows[key]

    def remove(self, app: str) -> None:
        with self._lock:
            for key in [k for k in self._rows if k[0] == app]:
                del self._rows[key]
