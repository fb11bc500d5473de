"""SLO maths against hand-computed tables, and the minute series under a fake clock."""

from __future__ import annotations

import pytest
from telemetry_testkit import DAY, START, metrics

from courtyard.contracts import LATENCY_BUCKETS, SloSpec
from courtyard.core import FakeClock
from courtyard.telemetry import (
    MemorySeriesStore,
    Telemetry,
    budget_remaining,
    burn_rate,
    burn_rules,
)


@pytest.mark.parametrize(
    ("days", "factors"),
    [
        (30, (14.4, 6.0, 3.0, 1.0)),
        (28, (13.44, 5.6, 2.8, 0.9333)),
    ],
)
def test_burn_rate_thresholds_follow_the_workbook(days: int, factors: tuple[float, ...]) -> None:
    rules = burn_rules(days * DAY)
    assert [r.severity for r in rules] == ["page", "page", "ticket", "ticket"]
    assert [(r.long, r.short) for r in rules] == [
        (3600, 300),
        (6 * 3600, 1800),
        (DAY, 7200),
        (3 * DAY, 6 * 3600),
    ]
    assert [r.budget_share for r in rules] == [0.02, 0.05, 0.10, 0.10]
    assert [round(r.factor, 4) for r in rules] == list(factors)


@pytest.mark.parametrize(
    ("total", "bad", "budget", "burn", "left"),
    [
        (1000, 1, 0.001, 1.0, 0.0),  # exactly the budget: burn 1, nothing left
        (1000, 0, 0.001, 0.0, 1.0),
        (10_000, 5, 0.001, 0.5, 0.5),  # 0.05 % errors on a 99.9 % SLO
        (100, 100, 0.001, 1000.0, -999.0),  # full outage
        (0, 0, 0.001, 0.0, 1.0),  # no events: nothing burnt
        (200, 3, 0.01, 1.5, -0.5),
    ],
)
def test_budget_and_burn_by_hand(
    total: int, bad: int, budget: float, burn: float, left: float
) -> None:
    assert burn_rate(total, bad, budget) == pytest.approx(burn)
    assert budget_remaining(total, bad, budget) == pytest.approx(left)


async def test_windows_read_the_minutes_they_cover() -> None:
    clock = FakeClock(START)
    telemetry = Telemetry(MemorySeriesStore(), clock=clock)
    spec = SloSpec("shop", "availability", "availability", 0.999)
    telemetry.set_slos("shop", [spec])
    telemetry.ingest(1, metrics("shop", 90, 10))  # minute 0: 100 events, 10 bad
    await clock.advance(600)  # ten minutes later
    telemetry.ingest(1, metrics("shop", 190, 10))  # minute 10: 100 more, all good
    assert telemetry.events(spec, 300) == (100, 0)
    assert telemetry.events(spec, 3600) == (200, 10)
    rate, total = telemetry.burn_rate(spec, 3600)
    assert total == 200 and rate == pytest.approx((10 / 200) / 0.001)
    status = telemetry.status(spec)
    assert status.sli == pytest.approx(0.95)
    assert status.budget_remaining == pytest.approx(1 - 10 / 0.2)
    assert status.burn["5m"] == 0.0


async def test_latency_slo_counts_requests_within_the_rounded_down_threshold() -> None:
    clock = FakeClock(START)
    telemetry = Telemetry(MemorySeriesStore(), clock=clock)
    # 300 ms rounds down to the 250 ms bound: a request in the (0.25, 0.5] bucket is slow.
    spec = SloSpec("shop", "fast", "latency", 0.99, threshold=0.3)
    slow_index = LATENCY_BUCKETS.index(0.5)
    telemetry.ingest(1, metrics("shop", 50, seconds_bucket=slow_index))
    telemetry.ingest(2, metrics("shop", 150, seconds_bucket=LATENCY_BUCKETS.index(0.25)))
    assert telemetry.events(spec, 300) == (200, 50)


async def test_counter_resets_and_mesh_calls() -> None:
    clock = FakeClock(START)
    telemetry = Telemetry(MemorySeriesStore(), clock=clock)
    spec = SloSpec("notes", "availability", "availability", 0.99)
    telemetry.ingest(1, metrics("notes", 100))
    telemetry.ingest(1, metrics("notes", 130))  # +30
    telemetry.ingest(1, metrics("notes", 5))  # the worker restarted: 5 new
    mesh = metrics("other", 0)
    mesh["mesh"] = {"expenses>notes|2xx": 7, "expenses>notes|5xx": 3, "notes>_events|2xx": 9}
    telemetry.ingest(2, mesh)
    assert telemetry.events(spec, 60) == (145, 3)
    signals = telemetry.signals("notes", 300)
    assert signals.requests == 145 and signals.errors == 3
    assert signals.rate == pytest.approx(145 / 300)
    assert signals.p99 is not None


async def test_memory_is_bounded_over_a_whole_window() -> None:
    clock = FakeClock(START)
    telemetry = Telemetry(MemorySeriesStore(), clock=clock)
    spec = SloSpec("shop", "availability", "availability", 0.999, window=28 * DAY)
    telemetry.set_slos("shop", [spec])
    sent = 0
    for minute in range(35 * 24 * 60):  # five weeks of traffic, one report a minute
        sent += 10
        telemetry.ingest(1, metrics("shop", sent))
        if minute % 60 == 0:
            await telemetry.flush()
        await clock.advance(60)
    await telemetry.flush()
    assert telemetry.size("shop") <= 360 + 28 * 24 + 2
    total, _ = telemetry.events(spec, spec.window)
    assert 28 * 24 * 60 * 10 - 700 <= total <= 28 * 24 * 60 * 10 + 700  # hour edges


async def test_series_survive_a_restart() -> None:
    clock = FakeClock(START)
    store = MemorySeriesStore()
    first = Telemetry(store, clock=clock)
    first.ingest(1, metrics("shop", 40, 2))
    await first.flush()
    second = Telemetry(store, clock=clock)
    await second.load()
    spec = SloSpec("shop", "availability", "availability", 0.999)
    assert second.events(spec, 300) == (42, 2)
