"""Timeouts measured on the injected clock, so a FakeClock drives them in tests too.

``asyncio.timeout`` reads the loop's own clock; every wait of the supervisor goes through the
:class:`~courtyard.core.Clock` it was given instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from courtyard.core import Clock

T = TypeVar("T")


async def within(clock: Clock, seconds: float, awaitable: Awaitable[T]) -> T:
    """Await ``awaitable`` for at most ``seconds`` of ``clock`` time.

    Raises TimeoutError (after cancelling it) when time runs out first.
    """
    work = asyncio.ensure_future(awaitable)
    timer = asyncio.ensure_future(clock.sleep(seconds))
    try:
        await asyncio.wait({work, timer}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        timed_out = not work.done()
        work.cancel()
        timer.cancel()
        # Wait for both to unwind; asyncio.wait raises nothing of theirs, but lets a
        # cancellation of the caller through.
        await asyncio.wait({work, timer})
    if timed_out or work.cancelled():
        raise TimeoutError(f"not done within {seconds:g} s")
    return work.result()
