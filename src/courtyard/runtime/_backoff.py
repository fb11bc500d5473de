"""When to restart a failed instance, and when an app counts as crash-looping: pure functions.

Backoff is capped exponential with jitter, as in "Exponential Backoff And Jitter" (AWS
Architecture Blog, 2015), so that instances failing together do not restart in lockstep.
Crash-loop follows Kubernetes' CrashLoopBackOff: past ``limit`` restarts within ``window`` the
instance keeps being retried, at the maximum delay, until it has run stably for ``window``.
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

Jitter = Literal["full", "equal", "none"]


@dataclass(frozen=True)
class RestartPolicy:
    """The knobs of :func:`next_restart_delay` (taken from RuntimeConfig)."""

    base: float = 0.5
    cap: float = 30.0
    crash_loop_restarts: int = 5
    crash_loop_window: float = 60.0
    jitter: Jitter = "equal"


@dataclass(frozen=True)
class RestartHistory:
    """What one instance's restarts looked like so far (monotonic seconds)."""

    restarts: tuple[float, ...] = ()  # times of restarts within the crash-loop window
    consecutive: int = 0  # restarts since the instance last ran stably
    is_crash_looping: bool = False


def backoff_delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    jitter: Jitter = "equal",
    random: Callable[[], float] = _random.random,
) -> float:
    """Seconds to wait before restart number ``attempt`` (1 for the first).

    The ceiling is ``min(cap, base * 2 ** (attempt - 1))``; "full" jitter draws from
    ``[0, ceiling]``, "equal" from ``[ceiling / 2, ceiling]``, "none" returns the ceiling.
    ``random`` returns a float in ``[0, 1)`` (inject a fixed one in tests).
    """
    if attempt < 1:
        return 0.0
    # 2 ** 64 is already far past any cap; keeps the float finite for huge attempt counts.
    ceiling = min(cap, base * 2.0 ** min(attempt - 1, 64))
    if jitter == "full":
        return ceiling * random()
    if jitter == "equal":
        return ceiling / 2 + ceiling / 2 * random()
    return ceiling


def is_crash_loop(restarts: Sequence[float], now: float, *, limit: int, window: float) -> bool:
    """True when ``limit`` or more ``restarts`` happened within ``window`` before ``now``."""
    return limit > 0 and sum(1 for t in restarts if now - t < window) >= limit


def record_restart(history: RestartHistory, now: float, policy: RestartPolicy) -> RestartHistory:
    """The history after one more restart at ``now``."""
    recent = (*(t for t in history.restarts if now - t < policy.crash_loop_window), now)
    looping = history.is_crash_looping or is_crash_loop(
        recent, now, limit=policy.crash_loop_restarts, window=policy.crash_loop_window
    )
    return RestartHistory(recent, history.consecutive + 1, looping)


def settle(
    history: RestartHistory, now: float, up_since: float, policy: RestartPolicy
) -> RestartHistory:
    """Forget the past once the instance has been up for a whole window (backoff resets)."""
    if history == RestartHistory() or now - up_since < policy.crash_loop_window:
        return history
    return RestartHistory()


def next_restart_delay(
    history: RestartHistory,
    policy: RestartPolicy,
    random: Callable[[], float] = _random.random,
) -> float:
    """Seconds before the next start: the cap while crash-looping, else jittered backoff."""
    if history.is_crash_looping:
        return policy.cap
    return backoff_delay(
        history.consecutive, base=policy.base, cap=policy.cap, jitter=policy.jitter, random=random
    )
