"""The alert engine over a fake burn source: rules, the minimum-traffic guard, states,
deduplication, resolution, silences and their audit trail (fake clock, no sleeps)."""

from __future__ import annotations

import asyncio

import pytest

from courtyard.audit import Actor
from courtyard.contracts import SloSpec
from courtyard.core import FakeClock
from courtyard.telemetry._alerts import Alert, AlertConfig, AlertEngine
from courtyard.telemetry._silences import MemorySilenceStore
from fakes import RecordingAudit

DAY = 86400.0
HOUR = 3600.0
SLO = SloSpec("shop", "availability", "availability", 0.999, window=28 * DAY)
# 28-day factors: page 13.44 (1h/5m), 5.6 (6h/30m); ticket 2.8 (1d/2h), 0.9333 (3d/6h).


class FakeSource:
    """Burn rates by window; every window not set burns nothing."""

    def __init__(self, *specs: SloSpec) -> None:
        self.specs = list(specs)
        self.rates: dict[float, tuple[float, int]] = {}
        self.calls = 0

    def slos(self, app: str | None = None) -> list[SloSpec]:
        return [s for s in self.specs if app is None or s.app == app]

    def burn_rate(self, spec: SloSpec, window: float) -> tuple[float, int]:
        self.calls += 1
        return self.rates.get(window, (0.0, 0))

    def outage(self, burn: float = 1000.0, events: int = 100) -> None:
        """Every window burns ``burn`` with ``events`` events."""
        for window in (300, 1800, HOUR, 2 * HOUR, 6 * HOUR, DAY, 3 * DAY):
            self.rates[float(window)] = (burn, events)

    def calm(self) -> None:
        self.rates.clear()


class RecordingNotifier:
    def __init__(self) -> None:
        self.sent: list[Alert] = []

    def notify(self, alert: Alert) -> None:
        self.sent.append(alert)

    async def drain(self) -> None:
        return None


class RecordingRemediator:
    def __init__(self) -> None:
        self.fired: list[Alert] = []

    async def on_fire(self, alert: Alert) -> None:
        self.fired.append(alert)


class Rig:
    def __init__(self, *specs: SloSpec, min_events: int = 10) -> None:
        self.clock = FakeClock(1_700_000_040.0)
        self.audit = RecordingAudit()
        self.source = FakeSource(*(specs or (SLO,)))
        self.notifier = RecordingNotifier()
        self.remediator = RecordingRemediator()
        self.store = MemorySilenceStore()
        self.engine = AlertEngine(
            self.source,
            self.notifier,
            self.remediator,
            self.audit,
            clock=self.clock,
            config=AlertConfig(interval=10.0, min_events=min_events, keep_resolved=3),
            silences=self.store,
        )

    def actions(self) -> list[str]:
        return [e.action for e in self.audit.events]

    def notified(self) -> list[tuple[str, str]]:
        return [(a.fingerprint, a.state) for a in self.notifier.sent]

    async def step(self, seconds: float = 10.0) -> list[Alert]:
        await self.clock.advance(seconds)
        changed = await self.engine.evaluate()
        await self.engine.drain()
        return changed


@pytest.fixture
def rig() -> Rig:
    return Rig()


async def test_a_full_outage_fires_page_and_ticket_once(rig: Rig) -> None:
    rig.source.outage()
    changed = await rig.step()
    assert sorted((a.severity, a.state) for a in changed) == [
        ("page", "firing"),
        ("ticket", "firing"),
    ]
    page = next(a for a in changed if a.severity == "page")
    assert page.fingerprint == "shop/availability/page"
    assert page.burn is not None
    assert (page.burn.long, page.burn.short) == ("1h", "5m")
    assert page.burn.factor == pytest.approx(13.44)
    assert rig.engine.firing_count("shop") == 2
    assert rig.engine.firing_by_app() == {"shop": 2}
    assert sorted(a.severity for a in rig.remediator.fired) == ["page", "ticket"]


async def test_firing_is_deduplicated_across_evaluations(rig: Rig) -> None:
    rig.source.outage()
    for _ in range(30):
        await rig.step()
    assert rig.notified() == [
        ("shop/availability/page", "firing"),
        ("shop/availability/ticket", "firing"),
    ]
    assert rig.actions().count("alert.fire") == 2
    assert len(rig.remediator.fired) == 2
    first = rig.engine.alerts()
    await rig.step()
    assert [a.id for a in rig.engine.alerts()] == [a.id for a in first]


async def test_resolves_once_when_no_rule_holds(rig: Rig) -> None:
    rig.source.outage()
    fired = await rig.step(5)
    rig.source.calm()
    resolved = await rig.step()
    assert {a.state for a in resolved} == {"resolved"}
    assert {a.id for a in resolved} == {a.id for a in fired}
    assert all(a.resolved_at == rig.clock.time() for a in resolved)
    assert await rig.step() == []
    assert rig.engine.alerts() == []
    assert rig.notified().count(("shop/availability/page", "resolved")) == 1
    listing = rig.engine.alerts(include_resolved=True)
    assert {a.state for a in listing} == {"resolved"}
    resolve = [e for e in rig.audit.events if e.action == "alert.resolve"]
    assert len(resolve) == 2
    assert resolve[0].details["firedFor"] == 10
    assert resolve[0].target == "app/shop"
    assert resolve[0].actor == Actor(kind="system", id="courtyard")


async def test_fires_again_with_a_new_id(rig: Rig) -> None:
    rig.source.outage()
    first = {a.id for a in await rig.step()}
    rig.source.calm()
    await rig.step()
    rig.source.outage()
    second = {a.id for a in await rig.step()}
    assert first.isdisjoint(second)


async def test_the_minimum_traffic_guard(rig: Rig) -> None:
    rig.source.outage(burn=1000.0, events=9)  # 9 failures of 9 requests: below 10 events
    assert await rig.step() == []
    rig.source.outage(burn=1000.0, events=10)
    assert len(await rig.step()) == 2


async def test_both_windows_must_burn(rig: Rig) -> None:
    rig.source.rates[HOUR] = (20.0, 1000)  # long window over 13.44, short window calm
    rig.source.rates[300.0] = (5.0, 100)
    assert await rig.step() == []
    rig.source.rates.clear()
    rig.source.rates[HOUR] = (5.0, 1000)  # a spike: short over, long under
    rig.source.rates[300.0] = (500.0, 100)
    assert await rig.step() == []
    rig.source.rates[HOUR] = (13.44, 1000)  # exactly the factor holds
    rig.source.rates[300.0] = (13.44, 100)
    assert [a.severity for a in await rig.step()] == ["page"]


async def test_slow_burn_opens_a_ticket_not_a_page(rig: Rig) -> None:
    for window in (2 * HOUR, DAY):
        rig.source.rates[window] = (3.0, 5000)  # ≥ 2.8 over 1d and 2h
    assert [(a.severity, a.burn and a.burn.long) for a in await rig.step()] == [("ticket", "1d")]


async def test_a_removed_slo_resolves_its_alerts(rig: Rig) -> None:
    rig.source.outage()
    await rig.step()
    rig.source.specs = []
    resolved = await rig.step()
    assert sorted(a.state for a in resolved) == ["resolved", "resolved"]
    assert rig.engine.firing_count() == 0


async def test_resolved_alerts_kept_are_bounded(rig: Rig) -> None:
    for _ in range(4):
        rig.source.outage()
        await rig.step()
        rig.source.calm()
        await rig.step()
    assert len(rig.engine.alerts(include_resolved=True)) == 3  # keep_resolved


async def test_concurrent_evaluations_never_transition_twice(rig: Rig) -> None:
    rig.source.outage()
    await rig.clock.advance(10)
    results = await asyncio.gather(*(rig.engine.evaluate() for _ in range(5)))
    await rig.engine.drain()
    assert sorted(len(r) for r in results) == [0, 0, 0, 0, 2]
    assert rig.actions().count("alert.fire") == 2
    assert len(rig.notifier.sent) == 2


async def test_run_evaluates_every_interval(rig: Rig) -> None:
    task = asyncio.create_task(rig.engine.run())
    try:
        await asyncio.sleep(0)
        rig.source.outage()
        await rig.clock.advance(10)
        await rig.engine.drain()
        assert rig.engine.firing_count() == 2
        rig.source.calm()
        await rig.clock.advance(10)
        await rig.engine.drain()
        assert rig.engine.firing_count() == 0
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_run_survives_a_failing_source(rig: Rig) -> None:
    def broken(spec: SloSpec, window: float) -> tuple[float, int]:
        raise RuntimeError("store gone")

    rig.source.burn_rate = broken  # type: ignore[method-assign]
    task = asyncio.create_task(rig.engine.run())
    try:
        await asyncio.sleep(0)
        await rig.clock.advance(30)
        assert not task.done()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


# -- silences -----------------------------------------------------------------------------

ADMIN = Actor(kind="user", id="u_admin", auth="password")


async def test_a_silenced_alert_fires_and_is_audited_but_not_notified_or_remediated(
    rig: Rig,
) -> None:
    silence = await rig.engine.silence(
        "shop",
        until=rig.clock.time() + 2 * HOUR,
        comment="planned migration",
        created_by="u_admin",
        actor=ADMIN,
    )
    rig.source.outage()
    changed = await rig.step()
    assert len(changed) == 2 and all(a.silenced for a in changed)
    assert rig.notifier.sent == [] and rig.remediator.fired == []
    fire = [e for e in rig.audit.events if e.action == "alert.fire"]
    assert len(fire) == 2 and all(e.details["silenced"] is True for e in fire)
    create = rig.audit.events[0]
    assert create.action == "silence.create" and create.actor == ADMIN
    assert create.target == "app/shop"
    assert create.details["silence"] == silence.id
    assert create.details["comment"] == "planned migration"
    # Resolving while silenced: audited, not notified.
    rig.source.calm()
    await rig.step()
    assert rig.actions().count("alert.resolve") == 2
    assert rig.notifier.sent == []


async def test_a_silence_narrowed_to_one_severity(rig: Rig) -> None:
    await rig.engine.silence(
        "shop", severity="ticket", until=rig.clock.time() + HOUR, comment="x", created_by="a"
    )
    rig.source.outage()
    await rig.step()
    assert rig.notified() == [("shop/availability/page", "firing")]
    assert [a.severity for a in rig.remediator.fired] == ["page"]


async def test_a_silence_of_another_slo_or_app_does_not_match(rig: Rig) -> None:
    until = rig.clock.time() + HOUR
    await rig.engine.silence("shop", slo="latency", until=until, comment="x", created_by="a")
    await rig.engine.silence("blog", until=until, comment="x", created_by="a")
    rig.source.outage()
    await rig.step()
    assert len(rig.notifier.sent) == 2


async def test_silencing_a_firing_alert_mutes_its_resolution(rig: Rig) -> None:
    rig.source.outage()
    await rig.step()
    await rig.engine.silence("shop", until=rig.clock.time() + HOUR, comment="x", created_by="a")
    assert all(a.silenced for a in rig.engine.alerts())
    rig.source.calm()
    await rig.step()
    assert [s for _, s in rig.notified()] == ["firing", "firing"]


async def test_a_silence_ends_by_itself_and_an_alert_still_firing_is_then_announced(
    rig: Rig,
) -> None:
    silence = await rig.engine.silence(
        "shop", until=rig.clock.time() + 60, comment="deploy", created_by="a"
    )
    rig.source.outage()
    await rig.step()
    assert rig.notifier.sent == []
    assert [s.id for s in rig.engine.silences()] == [silence.id]
    await rig.step(60)
    assert rig.engine.silences() == []
    assert rig.store.list() == []
    ended = [e for e in rig.audit.events if e.action == "silence.expire"]
    assert len(ended) == 1 and ended[0].details["reason"] == "ended"
    assert ended[0].actor == Actor(kind="system", id="courtyard")
    assert sorted(rig.notified()) == [
        ("shop/availability/page", "firing"),
        ("shop/availability/ticket", "firing"),
    ]
    assert len(rig.remediator.fired) == 2
    await rig.step()  # announced once only
    assert len(rig.notifier.sent) == 2


async def test_expire_ends_a_silence_now(rig: Rig) -> None:
    silence = await rig.engine.silence(
        "shop", until=rig.clock.time() + HOUR, comment="x", created_by="u_admin"
    )
    ended = await rig.engine.expire(silence.id, actor=ADMIN)
    assert ended == silence
    assert await rig.engine.expire(silence.id, actor=ADMIN) is None
    assert rig.engine.silences() == []
    expire = rig.audit.events[-1]
    assert expire.action == "silence.expire" and expire.actor == ADMIN
    assert expire.details["reason"] == "expired"
    rig.source.outage()
    await rig.step()
    assert len(rig.notifier.sent) == 2


async def test_silences_survive_a_new_engine_on_the_same_store(rig: Rig) -> None:
    silence = await rig.engine.silence(
        "shop", until=rig.clock.time() + HOUR, comment="x", created_by="a"
    )
    again = AlertEngine(
        rig.source, rig.notifier, None, rig.audit, clock=rig.clock, silences=rig.store
    )
    await again.load()
    assert again.silences() == [silence]
    rig.source.outage()
    await again.evaluate()
    assert rig.notifier.sent == []


async def test_one_failing_slo_does_not_stop_the_others() -> None:
    other = SloSpec("blog", "availability", "availability", 0.999, window=28 * DAY)
    rig = Rig(SLO, other)
    rig.source.outage()
    real = rig.source.burn_rate

    def flaky(spec: SloSpec, window: float) -> tuple[float, int]:
        if spec.app == "shop":
            raise RuntimeError("series damaged")
        return real(spec, window)

    rig.source.burn_rate = flaky  # type: ignore[method-assign]
    changed = await rig.step()
    assert {a.app for a in changed} == {"blog"}
    rig.source.burn_rate = real  # type: ignore[method-assign]
    assert {a.app for a in await rig.step()} == {"shop"}
