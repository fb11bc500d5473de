"""The embedded time series: per app, what the gateway and the mesh counted in 1-minute buckets
of wall time (``floor(t / 60)``), with memory bounded whatever the traffic.

Two tiers per app. A ring of one slot per minute over the app's longest SLO window holds the
counts every SLO needs — requests, 5xx answers, timed requests and, per latency threshold in
use, the requests at or under it — as fixed-size arrays (about 470 KiB for 28 days). The last
hour keeps each minute's whole latency histogram, for p99 and for the minute's saved row.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from courtyard.contracts import LATENCY_BUCKETS, LatencyHistogram, WorkerMetrics

HISTOGRAM = len(LATENCY_BUCKETS) + 1  # one count per bound, then +Inf; not cumulative
_MAX_COUNT = 2**32 - 1  # a slot is an unsigned 32-bit count (4 G requests a minute)


@dataclass(frozen=True, slots=True)
class MinuteRow:
    """One app's counts in one minute, as saved: ``latency`` is the minute's histogram (one
    count per ``LATENCY_BUCKETS`` bound, then +Inf), empty when it was no longer known."""

    app: str
    minute: int  # floor(unix seconds / 60)
    total: int
    errors: int  # 5xx answers
    latency: tuple[int, ...]


def threshold_bound(threshold: float) -> int:
    """How many histogram buckets a latency threshold covers: the threshold is rounded DOWN
    to a ``LATENCY_BUCKETS`` bound, because a request between two bounds cannot be told
    apart and so counts as slow (the conservative side of an SLO). 0: nothing is fast enough.
    """
    return bisect_right(LATENCY_BUCKETS, threshold + 1e-12)


def rounded_threshold(threshold: float) -> float:
    """The threshold the counts actually use (seconds); 0.0 below the first bound."""
    covered = threshold_bound(threshold)
    return LATENCY_BUCKETS[covered - 1] if covered else 0.0


def percentile(histogram: Sequence[int], q: float) -> float | None:
    """The ``q`` quantile (0-1) of a histogram, interpolated inside its bucket as
    Prometheus' ``histogram_quantile`` does; None with no timed events."""
    count = sum(histogram)
    if count == 0:
        return None
    rank = q * count
    seen = 0
    lower = 0.0
    for index, bucket in enumerate(histogram):
        if index >= len(LATENCY_BUCKETS):
            return lower  # above the last bound: its lower edge is all we know
        upper = LATENCY_BUCKETS[index]
        if bucket and seen + bucket >= rank:
            return lower + (upper - lower) * (rank - seen) / bucket
        seen += bucket
        lower = upper
    return lower


def _zeros(size: int) -> array[int]:
    return array("I", bytes(4 * size))


class AppSeries:
    """One app's minutes: the ring over ``size`` minutes ending at the newest minute written,
    and the whole histograms of the last ``recent`` minutes."""

    __slots__ = (
        "_errors",
        "_good",
        "_head",
        "_recent",
        "_since",
        "_timed",
        "_total",
        "recent",
        "size",
    )

    def __init__(self, size: int, bounds: Iterable[int] = (), *, recent: int = 60) -> None:
        self.size = size
        self.recent = recent
        self._head: int | None = None  # the newest minute in the ring
        self._total = _zeros(size)
        self._errors = _zeros(size)
        self._timed = _zeros(size)
        self._good: dict[int, array[int]] = {bound: _zeros(size) for bound in set(bounds)}
        self._recent: dict[int, list[int]] = {}  # minute -> histogram, the last ``recent``
        self._since: dict[int, int] = {}  # bound -> first minute its column counted

    def reshape(self, size: int, bounds: Iterable[int]) -> None:
        """Hold ``size`` minutes (at least the current size) and count the latency ``bounds``.

        A new bound's column starts from the recent histograms: until older minutes are
        recounted from saved rows, its windows are clipped to the minutes it has counted
        (never "slow" just because the count is missing).
        """
        if size > self.size:
            old, self.size = self.size, size
            columns = [self._total, self._errors, self._timed]
            self._total, self._errors, self._timed = (_zeros(size) for _ in range(3))
            good, self._good = self._good, {b: _zeros(size) for b in self._good}
            if self._head is not None:
                for minute in range(self._head - old + 1, self._head + 1):
                    before, after = minute % old, minute % size
                    self._total[after] = columns[0][before]
                    self._errors[after] = columns[1][before]
                    self._timed[after] = columns[2][before]
                    for bound, column in good.items():
                        self._good[bound][after] = column[before]
        wanted = set(bounds)
        for bound in set(self._good) - wanted:
            del self._good[bound]
            self._since.pop(bound, None)
        for bound in wanted - set(self._good):
            column = self._good[bound] = _zeros(self.size)
            for minute, histogram in self._recent.items():
                column[minute % self.size] = sum(histogram[:bound])
            if self._head is not None:
                self._since[bound] = self._head - self.recent + 1

    @property
    def bounds(self) -> frozenset[int]:
        return frozenset(self._good)

    def add(self, minute: int, total: int, errors: int, histogram: Sequence[int]) -> None:
        """Count into ``minute`` (older than the ring: dropped)."""
        if self._head is None or minute > self._head:
            self._advance(minute)
        head = self._head if self._head is not None else minute
        if minute <= head - self.size:
            return
        slot = minute % self.size
        _bump(self._total, slot, total)
        _bump(self._errors, slot, errors)
        if any(histogram):
            _bump(self._timed, slot, sum(histogram))
            for bound, column in self._good.items():
                _bump(column, slot, sum(histogram[:bound]))
            if minute > head - self.recent:
                kept = self._recent.get(minute)
                if kept is None:
                    kept = self._recent[minute] = [0] * HISTOGRAM
                for index, count in enumerate(histogram[:HISTOGRAM]):
                    kept[index] += count

    def _advance(self, minute: int) -> None:
        """Make ``minute`` the newest: the slots of the minutes skipped (and of the minute
        itself) held data one ring ago, so they start again at zero."""
        if self._head is not None and minute - self._head >= self.size:
            self._total, self._errors, self._timed = (_zeros(self.size) for _ in range(3))
            self._good = {bound: _zeros(self.size) for bound in self._good}
        elif self._head is not None:
            columns = [self._total, self._errors, self._timed, *self._good.values()]
            for skipped in range(self._head + 1, minute + 1):
                slot = skipped % self.size
                for column in columns:
                    column[slot] = 0
        self._head = minute
        for old in [m for m in self._recent if m <= minute - self.recent]:
            del self._recent[old]

    def _window(self, column: array[int], now: int, minutes: int) -> int:
        if self._head is None or minutes <= 0:
            return 0
        low = max(now - minutes + 1, self._head - self.size + 1)
        high = min(now, self._head)
        if low > high:
            return 0
        first, last = low % self.size, high % self.size
        if first <= last:
            return sum(column[first : last + 1])
        return sum(column[first:]) + sum(column[: last + 1])

    def totals(self, now: int, minutes: int) -> tuple[int, int, int]:
        """(requests, 5xx, timed requests) over the ``minutes`` ending with ``now``."""
        return (
            self._window(self._total, now, minutes),
            self._window(self._errors, now, minutes),
            self._window(self._timed, now, minutes),
        )

    def latency(self, bound: int, now: int, minutes: int) -> tuple[int, int]:
        """(timed requests, those within the first ``bound`` histogram buckets) over the
        window — clipped to the minutes the bound has been counted for."""
        column = self._good.get(bound)
        if column is None and bound:  # not a threshold in use: only the recent minutes know
            histograms = list(self._histograms(now, minutes))
            return sum(sum(h) for h in histograms), sum(sum(h[:bound]) for h in histograms)
        since = self._since.get(bound)
        if since is not None and now - minutes + 1 < since:
            minutes = max(0, now - since + 1)
        timed = self._window(self._timed, now, minutes)
        return timed, (self._window(column, now, minutes) if column is not None else 0)

    def histogram(self, now: int, minutes: int) -> list[int]:
        """The latency histogram over the window (at most the last ``recent`` minutes)."""
        merged = [0] * HISTOGRAM
        for histogram in self._histograms(now, minutes):
            for index, count in enumerate(histogram):
                merged[index] += count
        return merged

    def _histograms(self, now: int, minutes: int) -> Iterator[list[int]]:
        first = now - minutes + 1
        return (h for m, h in self._recent.items() if first <= m <= now)

    def rows(self, app: str, first: int, last: int) -> list[MinuteRow]:
        """The minutes ``first..last`` that saw requests, to be saved."""
        if self._head is None:
            return []
        rows = []
        for minute in range(max(first, self._head - self.size + 1), min(last, self._head) + 1):
            slot = minute % self.size
            total, errors = self._total[slot], self._errors[slot]
            histogram = self._recent.get(minute)
            if total or errors or histogram:
                latency = tuple(histogram) if histogram is not None else ()
                rows.append(MinuteRow(app, minute, total, errors, latency))
        return rows

    def capacity(self) -> int:
        """Minutes this series can ever hold (what bounds its memory)."""
        return self.size

    def recent_size(self) -> int:
        return len(self._recent)

    @classmethod
    def rebuilt(
        cls,
        size: int,
        bounds: Iterable[int],
        rows: Iterable[MinuteRow],
        *,
        recent: int = 60,
    ) -> AppSeries:
        """A series from saved rows (oldest first)."""
        series = cls(size, bounds, recent=recent)
        for row in rows:
            series.add(row.minute, row.total, row.errors, row.latency)
        return series

    def copy_into(self, other: AppSeries, after: int) -> None:
        """Add this series' minutes newer than ``after`` (not saved yet) to ``other``."""
        for row in self.rows("", after + 1, self._head if self._head is not None else after):
            other.add(row.minute, row.total, row.errors, row.latency)


def _bump(column: array[int], slot: int, value: int) -> None:
    if value:
        column[slot] = min(_MAX_COUNT, column[slot] + value)


def _histogram_into(vector: list[int], histogram: LatencyHistogram) -> None:
    for index, count in enumerate(histogram["buckets"][:HISTOGRAM]):
        vector[2 + index] += count


def app_vectors(metrics: WorkerMetrics) -> dict[str, list[int]]:
    """A worker's cumulative counters per app as ``[requests, 5xx, histogram...]``: gateway
    requests over every route of the app plus the mesh calls the app answered."""
    vectors: dict[str, list[int]] = {}

    def vector(app: str) -> list[int]:
        found = vectors.get(app)
        if found is None:
            found = vectors[app] = [0] * (2 + HISTOGRAM)
        return found

    def count(app: str, code_class: str, value: int) -> None:
        target = vector(app)
        target[0] += value
        if code_class == "5xx":
            target[1] += value

    for key, value in metrics["requests"].items():
        app, _, rest = key.partition("|")
        if app != "-":
            count(app, rest.rpartition("|")[2], value)
    for key, histogram in metrics["latency"].items():
        app = key.partition("|")[0]
        if app != "-":
            _histogram_into(vector(app), histogram)
    for key, value in metrics.get("mesh", {}).items():
        edge, _, code_class = key.rpartition("|")
        app = edge.partition(">")[2]
        if app and not app.startswith("_"):  # built-in services (events, traces): no SLO
            count(app, code_class, value)
    for key, histogram in metrics.get("mesh_latency", {}).items():
        app = key.partition(">")[2]
        if app and not app.startswith("_"):
            _histogram_into(vector(app), histogram)
    return vectors


class CounterDeltas:
    """Turns each worker's cumulative counters into what happened since its last report.

    A counter that went down means the worker restarted (its counters began again at zero),
    so the new value is all new, as Prometheus' ``rate()`` treats a counter reset.
    """

    def __init__(self) -> None:
        self._last: dict[int, dict[str, list[int]]] = {}

    def deltas(self, worker: int, metrics: WorkerMetrics) -> dict[str, list[int]]:
        """Per app, ``[requests, 5xx, histogram...]`` since this worker's previous report."""
        current = app_vectors(metrics)
        previous = self._last.get(worker, {})
        self._last[worker] = current
        result: dict[str, list[int]] = {}
        for app, vector in current.items():
            before = previous.get(app)
            if before is None or any(now < then for now, then in zip(vector, before, strict=True)):
                delta = vector
            else:
                delta = [now - then for now, then in zip(vector, before, strict=True)]
            if any(delta):
                result[app] = delta
        return result

    def forget(self, worker: int) -> None:
        self._last.pop(worker, None)


def minutes_in(window: float) -> int:
    """Buckets in a trailing window of ``window`` seconds: the current, partial minute and
    the ``ceil(window / 60) - 1`` whole minutes before it."""
    return max(1, math.ceil(window / 60 - 1e-9))


def rows_by_app(rows: Iterable[MinuteRow]) -> Mapping[str, list[MinuteRow]]:
    grouped: dict[str, list[MinuteRow]] = {}
    for row in sorted(rows, key=lambda r: (r.app, r.minute)):
        grouped.setdefault(row.app, []).append(row)
    return grouped
