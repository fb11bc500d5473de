"""The telemetry service: what the gateway workers counted, per app and minute, and each SLO's
event-weighted budget and burn rates over it."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass

from courtyard.contracts import DEFAULT_SLO_WINDOW, SloSpec, WorkerMetrics
from courtyard.core import Clock
from courtyard.telemetry._series import (
    AppSeries,
    CounterDeltas,
    minutes_in,
    percentile,
    rows_by_app,
    threshold_bound,
)
from courtyard.telemetry._slo import BURN_WINDOWS, SloStatus, budget_remaining, burn_rate
from courtyard.telemetry._store import MinuteStore


@dataclass(frozen=True, slots=True)
class TelemetryConfig:
    """How much the series keep: every app at least ``retention`` seconds of minutes (more if
    one of its SLOs has a longer window), and whole histograms for the last ``recent``."""

    retention: float = DEFAULT_SLO_WINDOW
    recent: int = 60  # minutes


@dataclass(frozen=True, slots=True)
class Signals:
    """An app's golden signals over a trailing window."""

    requests: int
    rate: float  # requests per second
    errors: int  # 5xx answers
    error_ratio: float | None  # None with no requests
    p99: float | None  # seconds; over at most the last ``recent`` minutes


class Telemetry:
    """Per-app minute series fed by the workers' cumulative counters, and SLO maths over them.

    Minutes are whole minutes of wall time (``floor(t / 60)``); a trailing window of W seconds
    is the current, partial minute and the ``ceil(W / 60) - 1`` whole minutes before it, so a
    burn rate is right from the first minute of traffic.
    """

    def __init__(
        self, store: MinuteStore, *, clock: Clock, config: TelemetryConfig = TelemetryConfig()
    ) -> None:
        self._store = store
        self._clock = clock
        self._config = config
        self._series: dict[str, AppSeries] = {}
        self._slos: dict[str, tuple[SloSpec, ...]] = {}
        self._deltas = CounterDeltas()
        self._saved_through = self._minute() - 1  # newest minute saved (or known empty)
        self._stale: set[str] = set()  # apps to recount from the store at the next flush
        self._removed: set[str] = set()  # apps whose saved rows go at the next flush
        self._flushing = asyncio.Lock()

    # -- persistence -----------------------------------------------------------------------

    async def load(self) -> None:
        """Read the minutes saved before the last stop (within each app's window)."""
        now = self._minute()
        since = now - max(self._size(app) for app in [*self._slos, ""]) + 1
        rows = await asyncio.to_thread(self._store.load, since)
        for app, app_rows in rows_by_app(rows).items():
            series = AppSeries.rebuilt(
                self._size(app), self._bounds(app), app_rows, recent=self._config.recent
            )
            current = self._series.get(app)
            if current is not None:
                current.copy_into(series, self._saved_through)
            self._series[app] = series
        self._stale.clear()

    async def flush(self) -> None:
        """Save the closed minutes not saved yet and the current one so far (saved again,
        whole, at the next flush), drop saved minutes past every window, and recount apps
        whose windows or latency thresholds grew from their saved minutes."""
        async with self._flushing:
            now = self._minute()
            first = self._saved_through + 1
            rows = [row for app, s in self._series.items() for row in s.rows(app, first, now)]
            await asyncio.to_thread(self._store.save, rows)
            self._saved_through = max(self._saved_through, now - 1)
            longest = max(self._size(app) for app in [*self._series, ""])
            await asyncio.to_thread(self._store.prune, now - longest + 1)
            for app in list(self._removed):
                self._removed.discard(app)
                if app not in self._series:
                    await asyncio.to_thread(self._store.remove, app)
            for app in list(self._stale):
                self._stale.discard(app)
                await self._recount(app)

    async def _recount(self, app: str) -> None:
        since = self._minute() - self._size(app) + 1
        saved = await asyncio.to_thread(self._store.load, since, app)
        series = AppSeries.rebuilt(
            self._size(app),
            self._bounds(app),
            (row for row in saved if row.minute <= self._saved_through),
            recent=self._config.recent,
        )
        current = self._series.get(app)
        if current is not None:
            current.copy_into(series, self._saved_through)
        self._series[app] = series

    # -- declarations ----------------------------------------------------------------------

    def set_slos(self, app: str, specs: Sequence[SloSpec]) -> None:
        """The app's SLOs now; a longer window or a new latency threshold is counted from
        the recent minutes at once and from the saved minutes at the next :meth:`flush`."""
        self._slos[app] = tuple(specs)
        self._removed.discard(app)
        series = self._series.get(app)
        if series is None:
            return
        size, bounds = self._size(app), self._bounds(app)
        if size > series.size or not bounds <= series.bounds:
            self._stale.add(app)
        series.reshape(size, bounds)

    def forget(self, app: str) -> None:
        """The app is gone: drop its SLOs and series (its saved minutes at the next flush)."""
        self._slos.pop(app, None)
        self._series.pop(app, None)
        self._stale.discard(app)
        self._removed.add(app)

    def slos(self, app: str | None = None) -> list[SloSpec]:
        if app is not None:
            return list(self._slos.get(app, ()))
        return [spec for specs in self._slos.values() for spec in specs]

    # -- input -----------------------------------------------------------------------------

    def ingest(self, worker: int, metrics: WorkerMetrics) -> None:
        """A worker's cumulative counters: what changed since its last report is counted in
        the current minute."""
        minute = self._minute()
        for app, delta in self._deltas.deltas(worker, metrics).items():
            series = self._series.get(app)
            if series is None:
                series = AppSeries(self._size(app), self._bounds(app), recent=self._config.recent)
                self._series[app] = series
            series.add(minute, delta[0], delta[1], delta[2:])

    def worker_gone(self, worker: int) -> None:
        """The worker stopped: its next incarnation's counters start from zero."""
        self._deltas.forget(worker)

    # -- queries ---------------------------------------------------------------------------

    def signals(self, app: str, window: float = 300.0) -> Signals:
        """Requests, rate, 5xx ratio and p99 latency over the trailing ``window`` seconds."""
        series = self._series.get(app)
        if series is None:
            return Signals(0, 0.0, 0, None, None)
        now, minutes = self._minute(), minutes_in(window)
        requests, errors, _ = series.totals(now, minutes)
        return Signals(
            requests=requests,
            rate=requests / window if window > 0 else 0.0,
            errors=errors,
            error_ratio=errors / requests if requests else None,
            p99=percentile(series.histogram(now, minutes), 0.99),
        )

    def events(self, spec: SloSpec, window: float) -> tuple[int, int]:
        """(total, bad) events of the SLO over the trailing ``window`` seconds."""
        series = self._series.get(spec.app)
        if series is None:
            return 0, 0
        now, minutes = self._minute(), minutes_in(window)
        if spec.indicator == "latency":
            timed, good = series.latency(threshold_bound(spec.threshold or 0.0), now, minutes)
            return timed, timed - good
        requests, errors, _ = series.totals(now, minutes)
        return requests, errors

    def burn_rate(self, spec: SloSpec, window: float) -> tuple[float, int]:
        """((bad / total) / budget, total) over the trailing window; (0.0, 0) with no events."""
        total, bad = self.events(spec, window)
        return burn_rate(total, bad, spec.budget), total

    def status(self, spec: SloSpec) -> SloStatus:
        """The SLO over its whole window, and its burn rates over the alert windows."""
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
        """Minutes the app's series can hold (what bounds its memory); 0 with none."""
        series = self._series.get(app)
        return series.capacity() if series is not None else 0

    def _size(self, app: str) -> int:
        longest = max((s.window for s in self._slos.get(app, ())), default=0.0)
        return math.ceil(max(longest, self._config.retention) / 60)

    def _bounds(self, app: str) -> frozenset[int]:
        return frozenset(
            threshold_bound(spec.threshold or 0.0)
            for spec in self._slos.get(app, ())
            if spec.indicator == "latency"
        ) - {0}

    def _minute(self) -> int:
        return int(self._clock.time() // 60)
