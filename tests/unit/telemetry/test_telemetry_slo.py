"""SLO maths against hand-computed tables, and the minute series under a fake clock."""

from __future__ import annotations

import pytest
from telemetry_testkit import DAY, START, metrics

from courtyard.contracts import LATENCY_BUCKETS, SloSpec
from courtyard.core import FakeClock
from courtyard.telemetry import (
    BurnRule,
    MemoryMinuteStore,
    Telemetry,
    TelemetryConfig,
    budget_remaining,
    burn_rate,
    burn_rules,
)
from courtyard.telemetry._series import minutes_in, rounded_threshold, threshold_bound

HOUR = 3600.0


@pytest.mark.parametrize(
    ("days", "factors"),
    [
        (30, (14.4, 6.0, 3.0, 1.0)),  # SRE workbook, "Alerting on SLOs", table 5-8
        (28, (13.44, 5.6, 2.8, 0.9333)),  # the same budget shares over 28 days
    ],
)
def test_burn_rate_thresholds_follow_the_workbook(days: int, factors: tuple[float, ...]) -> None:
    rules = burn_rules(days * DAY)
    assert [r.severity for r in rules] == ["page", "page", "ticket", "ticket"]
    assert [(r.long, r.short) for r in rules] == [
        (HOUR, 300),
        (6 * HOUR, 1800),
        (DAY, 2 * HOUR),
        (3 * DAY, 6 * HOUR),
    ]
    assert [r.budget_share for r in rules] == [0.02, 0.05, 0.10, 0.10]
    assert [round(r.factor, 4) for r in rules] == list(factors)


def test_a_rule_is_its_budget_share_spent_over_its_long_window() -> None:
    page = burn_rules(30 * DAY)[0]
    assert page == BurnRule("page", HOUR, 300.0, pytest.approx(14.4), 0.02)  # type: ignore[arg-type]
    # At 14.4x for one hour, 2 % of a 30-day budget is gone: 14.4 * 1h / 720h = 0.02.
    assert page.factor * page.long / (30 * DAY) == pytest.approx(page.budget_share)


@pytest.mark.parametrize(
    ("total", "bad", "budget", "burn", "left"),
    [
        (1000, 1, 0.001, 1.0, 0.0),  # exactly the budget: burn 1, nothing left
        (1000, 0, 0.001, 0.0, 1.0),
        (10_000, 5, 0.001, 0.5, 0.5),  # 0.05 % errors on a 99.9 % SLO
        (100, 100, 0.001, 1000.0, -999.0),  # full outage
        (0, 0, 0.001, 0.0, 1.0),  # no events: nothing burnt
        (200, 3, 0.01, 1.5, -0.5),
        (1_000_000, 250, 0.0005, 0.5, 0.5),  # 99.95 %
    ],
)
def test_budget_and_burn_by_hand(
    total: int, bad: int, budget: float, burn: float, left: float
) -> None:
    assert burn_rate(total, bad, budget) == pytest.approx(burn)
    assert budget_remaining(total, bad, budget) == pytest.approx(left)


@pytest.mark.parametrize(
    ("threshold", "counted"),
    [
        (0.3, 0.25),  # between two bounds: rounded down (slower requests count as bad)
        (0.25, 0.25),  # exactly a bound
        (0.1, 0.1),
        (1.0, 1.0),
        (0.0005, 0.0),  # under the first bound: nothing is fast enough
        (60.0, 10.0),  # over the last bound
    ],
)
def test_latency_thresholds_round_down_to_a_bucket_bound(threshold: float, counted: float) -> None:
    assert rounded_threshold(threshold) == counted
    covered = threshold_bound(threshold)
    assert covered == sum(1 for bound in LATENCY_BUCKETS if bound <= counted)


@pytest.mark.parametrize(
    ("window", "minutes"), [(1, 1), (59, 1), (60, 1), (61, 2), (300, 5), (3600, 60), (DAY, 1440)]
)
def test_a_trailing_window_is_the_current_minute_and_whole_minutes_before(
    window: float, minutes: int
) -> None:
    assert minutes_in(window) == minutes


async def test_windows_read_the_minutes_they_cover() -> None:
    clock = FakeClock(START)
    telemetry = Telemetry(MemoryMinuteStore(), clock=clock)
    spec = SloSpec("shop", "availability", "availability", 0.999)
    telemetry.set_slos("shop", [spec])
    telemetry.ingest(1, metrics("shop", 90, 10))  # minute 0: 100 events, 10 bad
    await clock.advance(600)  # ten minutes later
    telemetry.ingest(1, metrics("shop", 190, 10))  # minute 10: 100 more, all good
    assert telemetry.events(spec, 300) == (100, 0)
    assert telemetry.events(spec, 600) == (100, 0)  # minutes 1..10
    assert telemetry.events(spec, 660) == (200, 10)  # minutes 0..10
    assert telemetry.events(spec, HOUR) == (200, 10)
    rate, total = telemetry.burn_rate(spec, HOUR)
    assert total == 200 and rate == pytest.approx((10 / 200) / 0.001)
    status = telemetry.status(spec)
    assert (status.total, status.bad) == (200, 10)
    assert status.sli == pytest.approx(0.95)
    assert status.budget_remaining == pytest.approx(1 - 10 / 0.2)
    assert set(status.burn) == {"5m", "30m", "1h", "2h", "6h", "1d", "3d"}
    assert status.burn["5m"] == 0.0
    assert status.burn["1h"] == pytest.approx(50.0)


async def test_burn_rates_are_right_from_the_first_minute_of_traffic() -> None:
    clock = FakeClock(START + 10)  # ten seconds into a minute
    telemetry = Telemetry(MemoryMinuteStore(), clock=clock)
    spec = SloSpec("shop", "availability", "availability", 0.999, window=30 * DAY)
    telemetry.set_slos("shop", [spec])
    telemetry.ingest(1, metrics("shop", 0, 20))  # a full outage, twenty seconds old
    page = burn_rules(spec.window)[0]
    for window in (page.long, page.short):
        rate, total = telemetry.burn_rate(spec, window)
        assert total == 20 and rate == pytest.approx(1000.0) and rate >= page.factor
    assert telemetry.burn_rate(SloSpec("quiet", "a", "availability", 0.999), 300) == (0.0, 0)


async def test_the_window_slides_by_whole_minutes_of_wall_time() -> None:
    clock = FakeClock(START)
    telemetry = Telemetry(MemoryMinuteStore(), clock=clock)
    spec = SloSpec("shop", "availability", "availability", 0.99)
    telemetry.ingest(1, metrics("shop", 0, 5))
    await clock.advance(4 * 60 + 59)  # still within 5 minutes (minute 0 .. minute 4)
    assert telemetry.events(spec, 300) == (5, 5)
    await clock.advance(1)  # minute 5: minute 0 left the 5-minute window
    assert telemetry.events(spec, 300) == (0, 0)
    assert telemetry.events(spec, 360) == (5, 5)


async def test_latency_slo_counts_requests_within_the_rounded_down_threshold() -> None:
    clock = FakeClock(START)
    telemetry = Telemetry(MemoryMinuteStore(), clock=clock)
    # 300 ms rounds down to the 250 ms bound: a request in the (0.25, 0.5] bucket is slow.
    spec = SloSpec("shop", "fast", "latency", 0.99, threshold=0.3)
    telemetry.set_slos("shop", [spec])
    slow_index = LATENCY_BUCKETS.index(0.5)
    telemetry.ingest(1, metrics("shop", 50, seconds_bucket=slow_index))
    telemetry.ingest(2, metrics("shop", 150, seconds_bucket=LATENCY_BUCKETS.index(0.25)))
    assert telemetry.events(spec, 300) == (200, 50)
    assert telemetry.events(spec, 28 * DAY) == (200, 50)
    # A threshold nobody declared is answered from the recent minutes.
    other = SloSpec("shop", "slow", "latency", 0.99, threshold=1.0)
    assert telemetry.events(other, 300) == (200, 0)


async def test_a_new_threshold_never_counts_unseen_minutes_as_slow() -> None:
    clock = FakeClock(START)
    store = MemoryMinuteStore()
    telemetry = Telemetry(store, clock=clock, config=TelemetryConfig(recent=60))
    fast = SloSpec("shop", "fast", "latency", 0.99, threshold=0.1)
    telemetry.set_slos("shop", [fast])
    sent = 0
    for _ in range(3 * 60):  # three hours, 10 requests a minute in the 50 ms bucket
        sent += 10
        telemetry.ingest(1, metrics("shop", sent, seconds_bucket=LATENCY_BUCKETS.index(0.05)))
        await telemetry.flush()
        await clock.advance(60)
    stricter = SloSpec("shop", "fast", "latency", 0.99, threshold=0.025)
    telemetry.set_slos("shop", [stricter])
    # Until the next flush only the last hour is counted for 25 ms — all of it slow, and
    # only what was seen: the older two hours are not taken for slow requests.
    total, bad = telemetry.events(stricter, 6 * HOUR)
    assert total == bad and 500 <= total <= 600
    await telemetry.flush()  # recounted from the saved minutes
    assert telemetry.events(stricter, 6 * HOUR) == (1800, 1800)
    assert telemetry.events(fast, 6 * HOUR) == (600, 0)  # undeclared now: the last hour only


async def test_counter_resets_and_mesh_calls() -> None:
    clock = FakeClock(START)
    telemetry = Telemetry(MemoryMinuteStore(), clock=clock)
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
    assert signals.error_ratio == pytest.approx(3 / 145)
    assert signals.p99 is not None and 0.005 < signals.p99 <= 0.01
    assert telemetry.signals("_events").requests == 0  # built-in services are not apps


async def test_a_worker_gone_starts_again_from_zero() -> None:
    clock = FakeClock(START)
    telemetry = Telemetry(MemoryMinuteStore(), clock=clock)
    spec = SloSpec("shop", "availability", "availability", 0.99)
    telemetry.ingest(3, metrics("shop", 100))
    telemetry.worker_gone(3)
    telemetry.ingest(3, metrics("shop", 120))  # a new worker 3 that already served 120
    assert telemetry.events(spec, 60) == (220, 0)
    signals = telemetry.signals("nobody")
    assert (signals.requests, signals.rate, signals.error_ratio, signals.p99) == (
        0,
        0.0,
        None,
        None,
    )


async def test_memory_is_bounded_over_a_whole_window() -> None:
    clock = FakeClock(START)
    telemetry = Telemetry(MemoryMinuteStore(), clock=clock)
    spec = SloSpec("shop", "availability", "availability", 0.999, window=28 * DAY)
    telemetry.set_slos("shop", [spec])
    sent = 0
    for _ in range(30 * 24 * 60):  # thirty days of traffic, one report a minute
        sent += 10
        telemetry.ingest(1, metrics("shop", sent))
        await clock.advance(60)
    telemetry.ingest(1, metrics("shop", sent))
    assert telemetry.size("shop") == 28 * 24 * 60  # one ring slot per minute, no more
    series = telemetry._series["shop"]
    assert series.recent_size() <= 60
    assert telemetry.events(spec, spec.window) == (28 * 24 * 60 * 10 - 10, 0)  # the newest
    assert telemetry.events(spec, DAY) == (24 * 60 * 10 - 10, 0)  # minute has no traffic yet


async def test_a_longer_window_grows_the_ring_and_keeps_what_it_held() -> None:
    clock = FakeClock(START)
    telemetry = Telemetry(MemoryMinuteStore(), clock=clock)
    telemetry.ingest(1, metrics("shop", 10))
    assert telemetry.size("shop") == 28 * 24 * 60  # the default window
    await clock.advance(DAY)
    telemetry.ingest(1, metrics("shop", 30))
    longer = SloSpec("shop", "quarter", "availability", 0.99, window=90 * DAY)
    telemetry.set_slos("shop", [longer])
    assert telemetry.size("shop") == 90 * 24 * 60
    assert telemetry.events(longer, longer.window) == (30, 0)
