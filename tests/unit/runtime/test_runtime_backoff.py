"""Backoff and crash-loop decisions, tested as pure functions and driven by a FakeClock."""

from __future__ import annotations

import asyncio

import pytest

from courtyard.core import FakeClock
from courtyard.runtime import backoff_delay, is_crash_loop
from courtyard.runtime._backoff import (
    RestartHistory,
    RestartPolicy,
    next_restart_delay,
    record_restart,
    settle,
)
from courtyard.runtime._deadlines import within


def test_backoff_doubles_up_to_the_cap_without_jitter() -> None:
    delays = [backoff_delay(n, base=0.5, cap=30.0, jitter="none") for n in range(1, 10)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_no_attempt_no_wait() -> None:
    assert backoff_delay(0, base=0.5, cap=30.0) == 0.0


@pytest.mark.parametrize(("draw", "expected"), [(0.0, 0.0), (0.5, 2.0), (0.999, 3.996)])
def test_full_jitter_draws_between_zero_and_the_ceiling(draw: float, expected: float) -> None:
    delay = backoff_delay(4, base=0.5, cap=30.0, jitter="full", random=lambda: draw)
    assert delay == pytest.approx(expected)


@pytest.mark.parametrize(("draw", "expected"), [(0.0, 2.0), (0.5, 3.0), (0.999, 3.998)])
def test_equal_jitter_keeps_at_least_half(draw: float, expected: float) -> None:
    delay = backoff_delay(4, base=0.5, cap=30.0, jitter="equal", random=lambda: draw)
    assert delay == pytest.approx(expected)


def test_huge_attempt_counts_stay_finite() -> None:
    assert backoff_delay(10_000, base=0.5, cap=30.0, jitter="none") == 30.0


def test_crash_loop_counts_only_restarts_inside_the_window() -> None:
    restarts = [0.0, 10.0, 50.0, 55.0, 59.0]
    assert is_crash_loop(restarts, 59.5, limit=5, window=60.0)
    assert not is_crash_loop(restarts, 60.5, limit=5, window=60.0)  # the one at 0 has aged out
    assert is_crash_loop(restarts, 60.5, limit=4, window=60.0)
    assert not is_crash_loop([], 0.0, limit=0, window=60.0)


def test_history_turns_into_a_crash_loop_and_waits_the_cap() -> None:
    policy = RestartPolicy(base=1.0, cap=30.0, crash_loop_restarts=3, crash_loop_window=60.0)
    history = RestartHistory()
    for now in (0.0, 1.0, 3.0):
        history = record_restart(history, now, policy)
        assert next_restart_delay(history, policy, random=lambda: 0.0) < 30.0 or now == 3.0
    assert history.is_crash_looping
    assert history.consecutive == 3
    assert next_restart_delay(history, policy, random=lambda: 0.0) == 30.0
    # Restarts 30 s apart no longer reach the limit, but the loop only ends by running stably.
    history = record_restart(history, 100.0, policy)
    assert history.is_crash_looping


def test_settle_forgets_after_a_stable_window() -> None:
    policy = RestartPolicy(crash_loop_restarts=2, crash_loop_window=60.0)
    history = record_restart(record_restart(RestartHistory(), 0.0, policy), 1.0, policy)
    assert history.is_crash_looping
    assert settle(history, now=50.0, up_since=10.0, policy=policy) is history
    assert settle(history, now=70.0, up_since=10.0, policy=policy) == RestartHistory()


async def test_restart_schedule_on_a_fake_clock() -> None:
    """A crashing process restarted by these rules: when does it reach crash-loop?"""
    clock = FakeClock(start=0.0)
    policy = RestartPolicy(
        base=1.0, cap=8.0, crash_loop_restarts=4, crash_loop_window=60.0, jitter="none"
    )
    starts: list[float] = []

    async def keeper() -> None:
        history = RestartHistory()
        while not history.is_crash_looping or len(starts) < 7:
            starts.append(clock.monotonic())  # the process starts and dies at once
            history = record_restart(history, clock.monotonic(), policy)
            await clock.sleep(next_restart_delay(history, policy))

    task = asyncio.create_task(keeper())
    await asyncio.sleep(0)
    await clock.advance(100.0)
    await task
    # 1, 2, 4 s of backoff, then crash-loop (4 restarts in 60 s): the cap, 8 s, from then on.
    assert starts == [0.0, 1.0, 3.0, 7.0, 15.0, 23.0, 31.0]


async def test_within_times_out_on_the_fake_clock() -> None:
    clock = FakeClock()
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    waiting = asyncio.create_task(within(clock, 5.0, never))
    while clock.sleepers == 0:  # let the timer start
        await asyncio.sleep(0)
    await clock.advance(4.9)
    assert not waiting.done()
    await clock.advance(0.2)
    with pytest.raises(TimeoutError):
        await waiting
    assert never.cancelled()


async def test_within_returns_the_result_first() -> None:
    clock = FakeClock()

    async def answer() -> int:
        return 42

    assert await within(clock, 1.0, answer()) == 42
    assert clock.sleepers == 0
