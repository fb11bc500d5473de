"""The login throttle: slows guessing per account and per client, never locks anyone out."""

from __future__ import annotations

import pytest

from courtyard.core import FakeClock
from courtyard.iam import Decision, LoginThrottle, ThrottlePolicy

ACCOUNT = "alice@example.com"
REAL_USER = "198.51.100.7"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def throttle(clock: FakeClock) -> LoginThrottle:
    return LoginThrottle(clock)


def _attacker(n: int) -> str:
    return f"203.0.{n // 256}.{n % 256}"


def test_a_fresh_account_and_client_are_allowed(throttle: LoginThrottle) -> None:
    assert throttle.check(ACCOUNT, REAL_USER) == Decision(allowed=True, retry_after=0.0)


async def test_guessing_from_100_addresses_is_throttled_by_the_account_counter(
    clock: FakeClock, throttle: LoginThrottle
) -> None:
    allowed = 0
    for n in range(100):
        if throttle.check(ACCOUNT, _attacker(n)).allowed:
            allowed += 1
            throttle.record_failure(ACCOUNT, _attacker(n))
    # Three free failures, then a fourth attempt; every later one waits.
    assert allowed == 4
    decision = throttle.check(ACCOUNT, _attacker(100))
    assert decision == Decision(allowed=False, retry_after=1.0)
    # The real user, from an address that never failed, waits too, but only that long.
    assert throttle.check(ACCOUNT, REAL_USER).allowed is False
    await clock.advance(decision.retry_after)
    assert throttle.check(ACCOUNT, REAL_USER).allowed is True
    throttle.record_success(ACCOUNT, REAL_USER)
    assert throttle.check(ACCOUNT, _attacker(0)).allowed is True


async def test_delay_doubles_and_caps_at_fifteen_minutes_with_no_lockout(
    clock: FakeClock, throttle: LoginThrottle
) -> None:
    waits = []
    for n in range(100):
        decision = throttle.check(ACCOUNT, _attacker(n))
        if not decision.allowed:
            waits.append(decision.retry_after)
            await clock.advance(decision.retry_after)
            assert throttle.check(ACCOUNT, _attacker(n)).allowed
        throttle.record_failure(ACCOUNT, _attacker(n))
    assert waits[:11] == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 900.0]
    assert set(waits[10:]) == {900.0}
    # After a hundred failures the real user still only waits out the cap.
    decision = throttle.check(ACCOUNT, REAL_USER)
    assert decision == Decision(allowed=False, retry_after=900.0)
    await clock.advance(900.0)
    assert throttle.check(ACCOUNT, REAL_USER).allowed is True
    throttle.record_success(ACCOUNT, REAL_USER)
    throttle.record_failure(ACCOUNT, REAL_USER)
    assert throttle.check(ACCOUNT, REAL_USER).allowed is True


async def test_one_client_spraying_many_accounts_is_throttled_by_the_client_counter(
    clock: FakeClock, throttle: LoginThrottle
) -> None:
    sprayer = "192.0.2.66"
    for n in range(10):
        assert throttle.check(f"user{n}", sprayer).allowed
        throttle.record_failure(f"user{n}", sprayer)
    assert throttle.check("user10", sprayer).allowed
    throttle.record_failure("user10", sprayer)
    assert throttle.check("user11", sprayer) == Decision(allowed=False, retry_after=1.0)
    # Those accounts are not held up for their owners on other addresses.
    assert throttle.check("user0", REAL_USER).allowed is True


def test_success_clears_the_account_but_not_the_client(throttle: LoginThrottle) -> None:
    sprayer = "192.0.2.66"
    for n in range(11):
        throttle.record_failure(f"victim{n}", sprayer)
    throttle.record_success("mallory", sprayer)
    assert throttle.check("mallory", sprayer).allowed is False
    assert throttle.check("mallory", REAL_USER).allowed is True


def test_account_names_differing_in_case_share_a_counter(throttle: LoginThrottle) -> None:
    for n, name in enumerate(["Alice", "ALICE", "alice", " alice "]):
        throttle.record_failure(name, _attacker(n))
    assert throttle.check("aLiCe", REAL_USER).allowed is False


def test_addresses_in_one_ipv6_64_share_a_counter(throttle: LoginThrottle) -> None:
    for n in range(11):
        throttle.record_failure(f"user{n}", f"2001:db8:1:2::{n:x}")
    assert throttle.check("someone", "2001:db8:1:2:ffff::1").allowed is False
    assert throttle.check("someone", "2001:db8:1:3::1").allowed is True


def test_ipv4_mapped_addresses_count_as_ipv4(throttle: LoginThrottle) -> None:
    for n in range(11):
        throttle.record_failure(f"user{n}", "::ffff:192.0.2.9")
    assert throttle.check("someone", "192.0.2.9").allowed is False


async def test_counters_are_forgotten_after_a_quiet_period(clock: FakeClock) -> None:
    throttle = LoginThrottle(clock, ThrottlePolicy(forget_after=3600.0))
    for n in range(20):
        throttle.record_failure(ACCOUNT, _attacker(n))
    assert throttle.check(ACCOUNT, REAL_USER).allowed is False
    await clock.advance(3600.0)
    assert throttle.check(ACCOUNT, REAL_USER).allowed is True
    throttle.record_failure(ACCOUNT, REAL_USER)
    assert throttle.check(ACCOUNT, REAL_USER).allowed is True


async def test_memory_stays_bounded(clock: FakeClock) -> None:
    throttle = LoginThrottle(clock, ThrottlePolicy(max_keys=50))
    for n in range(1000):
        throttle.record_failure(f"user{n}", _attacker(n))
        await clock.advance(0.001)
    assert throttle.tracked_keys <= 100
    # The most recent offender is still tracked.
    for _ in range(10):
        throttle.record_failure("user999", _attacker(999))
    assert throttle.check("user999", _attacker(5000)).allowed is False


async def test_quiet_counters_are_swept_when_others_fail(clock: FakeClock) -> None:
    throttle = LoginThrottle(clock, ThrottlePolicy(forget_after=1000.0))
    for n in range(30):
        throttle.record_failure(f"user{n}", _attacker(n))
    await clock.advance(1000.0)
    throttle.record_failure("late", "192.0.2.1")
    assert throttle.tracked_keys == 2


def test_policy_delays() -> None:
    policy = ThrottlePolicy()
    assert [policy.delay_after(n, 3) for n in range(3, 8)] == [0.0, 1.0, 2.0, 4.0, 8.0]
    assert policy.delay_after(10_000, 3) == 900.0


@pytest.mark.parametrize(
    "options",
    [
        {"base_delay": 0.0},
        {"base_delay": 10.0, "max_delay": 5.0},
        {"account_free_failures": -1},
        {"forget_after": 900.0},
        {"max_keys": 0},
    ],
)
def test_policy_refuses_settings_that_make_no_sense(options: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ThrottlePolicy(**options)  # type: ignore[arg-type]
