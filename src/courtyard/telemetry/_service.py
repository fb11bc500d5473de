"""The telemetry service: what the gateway workers counted, per app and minute, and each SLO's
budget and burn rates over it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from courtyard.contracts import DEFAULT_SLO_WINDOW, SloSpec, WorkerMetrics
from courtyard.core import Clock
from courtyard.telemetry._series import AppSeries, CounterDeltas, empty, good_within, percentile
from courtyard.telemetry._slo import (
    BURN_WINDOWS,
    SloStatus,
    budget_remaining,
    burn_rate,
)


class SeriesStore(Protocol):
    """Where the series survive a restart of the control plane."""

    def load(self) -> dict[str, Any]: ...

    def save(self, document: dict[str, Any]) -> None: ...


class MemorySeriesStore:
    """Keeps the last saved document in memory (tests, and nodes that need no history)."""

    def __init__(self) -> None:
        self.document: dict[str, Any] = {}

    def load(self) -> dict[str, Any]:
        copied: dict[str, Any] = json.loads(json.dumps(self.document))
        return copied

    def save(self, document: dict[str, Any]) -> None:
        self.document = json.loads(json.dumps(document))


class FileSeriesStore:
    """One JSON file in the data directory, replaced atomically (write, fsync, rename)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, Any]:
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return {}
        return document if isinstance(document, dict) else {}

    def save(self, document: dict[str, Any]) -> None:
        temporary = self.path.with_suffix(".tmp")
        with temporary.open("w", encoding="utf-8") as handle:
            json.dump(document, handle, separators=(",", ":"))
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(self.path)


@dataclass(frozen=True, slots=True)
class Signals:
    """An app's golden signals over a trailing window."""

    requests: int
    rate: float  # requests per second
    errors: int
    error_ratio: float | None
    p99: float | None  # seconds


class Telemetry:
    """Per-app minute series fed by the workers' counters, and SLO maths over them."""

    def __init__(self, store: SeriesStore, *, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._series: dict[str, AppSeries] = {}
        self._slos: dict[str, tuple[SloSpec, ...]] = {}
        self._deltas = CounterDeltas()

    async def load(self) -> None:
        """Read the series saved before the last stop."""
        document = await asyncio.to_thread(self._store.load)
        for app, data in document.get("apps", {}).items():
            with contextlib.suppress(TypeError, ValueError, AttributeError):
                self._series[app] = AppSeries.load(data)

    async def flush(self) -> None:
        """Fold old minutes into hours, drop what no window needs, and save."""
        now = self._minute()
        retention = self._retention_minutes()
        for series in self._series.values():
            series.compact(now, retention)
        document = {"apps": {app: s.dump() for app, s in self._series.items()}}
        await asyncio.to_thread(self._store.save, document)

    # -- declarations ----------------------------------------------------------------------

    def set_slos(self, app: str, specs: Sequence[SloSpec]) -> None:
        self._slos[app] = tuple(specs)

    def forget(self, app: str) -> None:
        self._slos.pop(app, None)
        self._series.pop(app, None)

    def slos(self, app: str | None = None) -> list[SloSpec]:
        if app is not None:
            return list(self._slos.get(app, ()))
        return [spec for specs in self._slos.values() for spec in specs]

    # -- input -----------------------------------------------------------------------------

    def ingest(self, worker: int, metrics: WorkerMetrics) -> None:
        """A worker's cumulative counters: what changed since its last report lands in the
        current minute."""
        minute = self._minute()
        for app, delta in self._deltas.deltas(worker, metrics).items():
            series = self._series.get(app)
            if series is None:
                series = self._series[app] = AppSeries()
            series.add(minute, delta)

    def worker_gone(self, worker: int) -> None:
        self._deltas.forget(worker)

    # -- queries ---------------------------------------------------------------------------

    def signals(self, app: str, window: float = 300.0) -> Signals:
        vector = self._sum(app, window)
        requests, errors = vector[0], vector[1]
        return Signals(
            requests=requests,
            rate=requests / window if window > 0 else 0.0,
            errors=errors,
            error_ratio=errors / requests if requests else None,
            p99=percentile(vector, 0.99),
        )

    def events(self, spec: SloSpec, window: float) -> tuple[int, int]:
        """(total, bad) events of the SLO over the trailing ``window`` seconds."""
        vector = self._sum(spec.app, window)
        if spec.indicator == "latency":
            timed, fast = good_within(vector, spec.threshold or 0.0)
            return timed, timed - fast
        return vector[0], vector[1]

    def burn_rate(self, spec: SloSpec, window: float) -> tuple[float, int]:
        total, bad = self.events(spec, window)
        return burn_rate(total, bad, spec.budget), total

    def status(self, spec: SloSpec) -> SloStatus:
        total, bad = self.events(spec, spec.window)
        return SloStatus(
            spec=spec,
            total=total,
            bad=bad,
            sli=(total - bad) / total if total else None,
            budget_remaining=budget_remaining(total, bad, spec.budget),
            burn={label: self.burn_rate(spec, w)[0] for label, w in BURN_WINDOWS.items()},
        )

    def size(self, app: str) -> int:
        """Buckets held for ``app`` (what bounds its memory)."""
        series = self._series.get(app)
        return series.size() if series is not None else 0

    def _sum(self, app: str, window: float) -> list[int]:
        series = self._series.get(app)
        if series is None:
            return empty()
        return series.sum(self._minute(), max(1, math.ceil(window / 60)))

    def _minute(self) -> int:
        return int(self._clock.time() // 60)

    def _retention_minutes(self) -> int:
        longest = max((s.window for s in self.slos()), default=DEFAULT_SLO_WINDOW)
        return math.ceil(max(longest, DEFAULT_SLO_WINDOW) / 60) + 60
