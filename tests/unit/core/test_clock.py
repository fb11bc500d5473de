import asyncio

from courtyard.core import FakeClock, SystemClock, is_dns_label, problem


async def test_fake_clock_wakes_sleepers_in_deadline_order() -> None:
    clock = FakeClock(start=100.0)
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.monotonic()))

    tasks = [asyncio.create_task(sleeper("late", 10)), asyncio.create_task(sleeper("early", 2))]
    await asyncio.sleep(0)
    assert clock.sleepers == 2
    await clock.advance(5)
    assert woke == [("early", 102.0)]
    await clock.advance(5)
    assert woke == [("early", 102.0), ("late", 110.0)]
    await asyncio.gather(*tasks)
    assert clock.time() == 110.0


async def test_system_clock_moves_forward() -> None:
    clock = SystemClock()
    before = clock.monotonic()
    await clock.sleep(0)
    assert clock.monotonic() >= before
    assert clock.time() > 1_600_000_000


def test_dns_labels() -> None:
    for good in ("a", "expenses", "app-2", "x" * 63):
        assert is_dns_label(good)
    for bad in ("", "A", "-a", "a-", "a_b", "x" * 64, "é"):
        assert not is_dns_label(bad)


def test_problem_document_has_rfc9457_members() -> None:
    doc = problem(404, "Not found", "no route", instance="/x", extra=1)
    assert doc["type"] == "https://courtyard.dev/problems/not-found"
    assert doc["status"] == 404
    assert doc["detail"] == "no route"
    assert dict(doc)["extra"] == 1
