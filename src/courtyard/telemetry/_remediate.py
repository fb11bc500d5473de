"""Runbook actions the platform takes by itself when an app's SLO alert fires.

Each declared action runs at most once per cooldown per app (a flapping alert must not roll
an app back and forth, nor add a replica every ten seconds), and every run or skip is audited
with the alert that caused it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from courtyard.audit import Actor, AuditEvent
from courtyard.contracts import RemediationSpec
from courtyard.core import Clock
from courtyard.telemetry._alerts import Alert, Audit

log = logging.getLogger("courtyard.telemetry")


class RemediationActions(Protocol):
    """What the lifecycle can do for a remediation; each returns a line for the audit trail."""

    async def restart(self, app: str) -> str: ...

    async def rollback(self, app: str) -> str: ...

    async def scale(self, app: str) -> str: ...


class Remediator:
    """Runs the app's declared actions for a firing, unsilenced alert."""

    def __init__(self, actions: RemediationActions, audit: Audit, *, clock: Clock) -> None:
        self._actions = actions
        self._audit = audit
        self._clock = clock
        self._plans: dict[str, tuple[RemediationSpec, ...]] = {}
        self._last: dict[tuple[str, str], float] = {}

    def set_plan(self, app: str, specs: Sequence[RemediationSpec]) -> None:
        self._plans[app] = tuple(specs)

    def forget(self, app: str) -> None:
        self._plans.pop(app, None)

    async def transition(self, alert: Alert) -> None:
        if alert.state != "firing" or alert.silenced:
            return
        for spec in self._plans.get(alert.app, ()):
            if spec.severity != alert.severity or spec.slo not in (None, alert.slo):
                continue
            await self._run(spec, alert)

    async def _run(self, spec: RemediationSpec, alert: Alert) -> None:
        now = self._clock.time()
        key = (spec.app, spec.action)
        details = {"alert": alert.id, "fingerprint": alert.fingerprint, "action": spec.action}
        last = self._last.get(key)
        if last is not None and now - last < spec.cooldown:
            await self._record(
                "remediation.skip",
                alert,
                "success",
                f"cooldown: last run {now - last:.0f} s ago, cooldown {spec.cooldown:.0f} s",
                details,
            )
            return
        self._last[key] = now
        try:
            if spec.action == "page":
                result = "paged (notification only)"
            else:
                result = await getattr(self._actions, spec.action)(spec.app)
        except Exception as exc:
            log.warning("remediation %s of %s failed: %s", spec.action, spec.app, exc)
            reason = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            await self._record("remediation.run", alert, "failure", reason, details)
            return
        await self._record("remediation.run", alert, "success", None, {**details, "result": result})

    async def _record(
        self,
        action: str,
        alert: Alert,
        outcome: str,
        reason: str | None,
        details: dict[str, str],
    ) -> None:
        await self._audit.record(
            AuditEvent(
                actor=Actor(kind="system", id="courtyard"),
                action=action,
                target=f"app/{alert.app}",
                outcome=outcome,  # type: ignore[arg-type]
                reason=reason,
                details=details,
            )
        )
