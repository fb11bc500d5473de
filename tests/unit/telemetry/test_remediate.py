"""Runbook actions: which declarations match an alert, the cooldown per (app, action), and
the audit trail of every run and skip (with the alert that caused it)."""

from __future__ import annotations

from courtyard.audit import Actor
from courtyard.contracts import RemediationSpec
from courtyard.core import FakeClock
from courtyard.telemetry._alerts import Alert
from courtyard.telemetry._remediate import Remediator
from fakes import RecordingAudit

SYSTEM = Actor(kind="system", id="courtyard")


class FakeActions:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.fail: dict[str, Exception] = {}

    async def _do(self, action: str, app: str) -> str:
        self.calls.append((action, app))
        if action in self.fail:
            raise self.fail[action]
        return f"{action} of {app} started"

    async def restart(self, app: str) -> str:
        return await self._do("restart", app)

    async def rollback(self, app: str) -> str:
        return await self._do("rollback", app)

    async def scale(self, app: str) -> str:
        return await self._do("scale", app)


def alert(
    severity: str = "page", slo: str = "availability", app: str = "shop", id: str = "a1"
) -> Alert:
    return Alert(
        id=id,
        app=app,
        slo=slo,
        severity=severity,  # type: ignore[arg-type]
        state="firing",
        started_at=0.0,
    )


class Rig:
    def __init__(self) -> None:
        self.clock = FakeClock(1_000_000.0)
        self.audit = RecordingAudit()
        self.actions = FakeActions()
        self.remediator = Remediator(self.actions, self.audit, clock=self.clock)


async def test_matching_declarations_run_and_are_audited_with_the_alert() -> None:
    rig = Rig()
    rig.remediator.set_plan(
        "shop",
        [
            RemediationSpec("shop", "page", "rollback"),
            RemediationSpec("shop", "page", "scale", slo="availability"),
            RemediationSpec("shop", "page", "restart", slo="latency"),  # another SLO
            RemediationSpec("shop", "ticket", "restart"),  # another severity
        ],
    )
    await rig.remediator.on_fire(alert())
    assert rig.actions.calls == [("rollback", "shop"), ("scale", "shop")]
    runs = rig.audit.events
    assert [e.action for e in runs] == ["remediation.run", "remediation.run"]
    first = runs[0]
    assert first.actor == SYSTEM and first.target == "app/shop" and first.outcome == "success"
    assert first.details == {
        "alert": "a1",
        "fingerprint": "shop/availability/page",
        "action": "rollback",
        "result": "rollback of shop started",
    }


async def test_a_second_run_within_the_cooldown_is_skipped_and_audited() -> None:
    rig = Rig()
    rig.remediator.set_plan("shop", [RemediationSpec("shop", "page", "rollback", cooldown=600)])
    await rig.remediator.on_fire(alert(id="a1"))
    await rig.clock.advance(599)
    await rig.remediator.on_fire(alert(id="a2"))
    assert rig.actions.calls == [("rollback", "shop")]
    skip = rig.audit.events[-1]
    assert skip.action == "remediation.skip" and skip.reason == "cooldown"
    assert skip.details["alert"] == "a2"
    assert skip.details["action"] == "rollback"
    assert skip.details["lastRunAgo"] == 599 and skip.details["cooldown"] == 600
    await rig.clock.advance(1)
    await rig.remediator.on_fire(alert(id="a3"))
    assert rig.actions.calls == [("rollback", "shop")] * 2


async def test_the_cooldown_is_per_app_and_action() -> None:
    rig = Rig()
    rig.remediator.set_plan("shop", [RemediationSpec("shop", "page", "restart")])
    rig.remediator.set_plan(
        "blog",
        [RemediationSpec("blog", "page", "restart"), RemediationSpec("blog", "ticket", "scale")],
    )
    await rig.remediator.on_fire(alert(app="shop"))
    await rig.remediator.on_fire(alert(app="blog"))
    await rig.remediator.on_fire(alert(app="blog", severity="ticket"))
    assert rig.actions.calls == [("restart", "shop"), ("restart", "blog"), ("scale", "blog")]


async def test_page_runs_nothing_but_is_audited() -> None:
    rig = Rig()
    rig.remediator.set_plan("shop", [RemediationSpec("shop", "page", "page")])
    await rig.remediator.on_fire(alert())
    assert rig.actions.calls == []
    [event] = rig.audit.events
    assert event.action == "remediation.run" and event.details["action"] == "page"


async def test_a_failing_action_is_audited_as_a_failure() -> None:
    rig = Rig()
    rig.actions.fail["rollback"] = RuntimeError("no previous revision\nsecond line")
    rig.remediator.set_plan("shop", [RemediationSpec("shop", "page", "rollback")])
    await rig.remediator.on_fire(alert())
    [event] = rig.audit.events
    assert event.action == "remediation.run" and event.outcome == "failure"
    assert event.reason == "no previous revision"
    assert event.details["action"] == "rollback" and event.details["alert"] == "a1"
    # A failed run still counts for the cooldown: no retry storm on a broken app.
    await rig.remediator.on_fire(alert(id="a2"))
    assert rig.audit.events[-1].reason == "cooldown"


async def test_no_matching_declaration_is_a_skip() -> None:
    rig = Rig()
    await rig.remediator.on_fire(alert())
    [event] = rig.audit.events
    assert event.action == "remediation.skip" and event.reason == "no-actions"
    assert event.details["fingerprint"] == "shop/availability/page"


async def test_resolved_alerts_and_forgotten_apps_run_nothing() -> None:
    rig = Rig()
    rig.remediator.set_plan("shop", [RemediationSpec("shop", "page", "restart")])
    resolved = Alert("r", "shop", "availability", "page", "resolved", 0.0, 1.0)
    await rig.remediator.on_fire(resolved)
    assert rig.audit.events == []
    rig.remediator.forget("shop")
    assert rig.remediator.plan("shop") == ()
    await rig.remediator.on_fire(alert())
    assert rig.actions.calls == []
