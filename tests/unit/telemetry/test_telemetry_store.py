"""One behaviour for every minute store — memory, SQLite and (integration) PostgreSQL — and
the telemetry service's flush/load round trip over each."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from telemetry_testkit import DAY, START, metrics

from backends import BACKENDS, sql_database
from courtyard.contracts import LATENCY_BUCKETS, SloSpec
from courtyard.core import FakeClock
from courtyard.telemetry import (
    MemoryMinuteStore,
    MinuteRow,
    MinuteStore,
    SqlMinuteStore,
    Telemetry,
)

M0 = int(START // 60)
HIST = len(LATENCY_BUCKETS) + 1


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MinuteStore]:
    if request.param == "memory":
        yield MemoryMinuteStore()
        return
    with sql_database(request, tmp_path) as db:
        yield SqlMinuteStore(db)


def row(app: str, minute: int, total: int, errors: int = 0) -> MinuteRow:
    latency = tuple([total] + [0] * (HIST - 1))
    return MinuteRow(app, minute, total, errors, latency)


def test_save_load_replace_prune_remove(store: MinuteStore) -> None:
    store.save([row("b", M0, 5), row("a", M0 + 1, 7, 1), row("a", M0, 3)])
    assert store.load(M0) == [row("a", M0, 3), row("a", M0 + 1, 7, 1), row("b", M0, 5)]
    assert store.load(M0 + 1) == [row("a", M0 + 1, 7, 1)]
    assert store.load(M0, "b") == [row("b", M0, 5)]
    store.save([row("a", M0, 30, 2)])  # the same minute again: replaced
    assert store.load(M0, "a")[0] == row("a", M0, 30, 2)
    store.prune(M0 + 1)
    assert store.load(0) == [row("a", M0 + 1, 7, 1)]
    store.remove("a")
    assert store.load(0) == []
    store.save([])
    empty = MinuteRow("c", M0, 4, 0, ())  # a minute whose histogram was no longer known
    store.save([empty])
    assert store.load(0) == [empty]


def test_many_rows_in_one_save(store: MinuteStore) -> None:
    rows = [row("shop", M0 + n, n + 1) for n in range(1500)]
    store.save(rows)
    store.save(rows[:1000])  # replaced in chunks
    assert store.load(0, "shop") == rows


async def test_flush_then_load_round_trip(store: MinuteStore) -> None:
    clock = FakeClock(START)
    availability = SloSpec("shop", "availability", "availability", 0.999)
    fast = SloSpec("shop", "fast", "latency", 0.99, threshold=0.3)
    first = Telemetry(store, clock=clock)
    first.set_slos("shop", [availability, fast])
    first.ingest(1, metrics("shop", 40, 2))
    await clock.advance(120)
    slow = LATENCY_BUCKETS.index(0.5)
    first.ingest(2, metrics("shop", 8, 0, seconds_bucket=slow))
    await first.flush()
    await clock.advance(30)  # a restart, within the same minute
    second = Telemetry(store, clock=clock)
    second.set_slos("shop", [availability, fast])
    await second.load()
    assert second.events(availability, 300) == (50, 2)
    assert second.events(fast, 300) == (50, 8)
    assert second.events(availability, 60) == (8, 0)  # the current minute, saved so far
    assert second.signals("shop", 300).p99 is not None
    second.ingest(1, metrics("shop", 1))  # the restarted worker: counts taken whole
    await second.flush()
    assert [(r.minute - M0, r.total) for r in store.load(0)] == [(0, 42), (2, 9)]


async def test_flush_prunes_past_the_window_and_forgets_removed_apps(store: MinuteStore) -> None:
    clock = FakeClock(START)
    telemetry = Telemetry(store, clock=clock)
    telemetry.set_slos("shop", [SloSpec("shop", "a", "availability", 0.99, window=DAY)])
    telemetry.ingest(1, metrics("shop", 10))
    telemetry.ingest(2, metrics("gone", 10))
    await telemetry.flush()
    assert {r.app for r in store.load(0)} == {"shop", "gone"}
    telemetry.forget("gone")
    await clock.advance(29 * DAY)  # past the 28-day retention every app keeps
    telemetry.ingest(1, metrics("shop", 11))
    await telemetry.flush()
    assert [(r.app, r.minute - M0, r.total) for r in store.load(0)] == [("shop", 29 * 1440, 1)]
