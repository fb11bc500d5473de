"""Runbook actions the platform takes by itself when an app's SLO alert fires (restart, roll
back to the previous revision, add a replica, or only page), as the app's manifest declares.

Each action runs at most once per cooldown per (app, action): a flapping alert must not roll an
app back and forth, nor add a replica every ten seconds. Every run and every skip is audited
with the alert that caused it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any, Protocol

from courtyard.audit import AuditEvent, Outcome
from courtyard.contracts import RemediationSpec
from courtyard.core import Clock
from courtyard.telemetry._alerts import SYSTEM, Alert, AuditSink

__all__ = ["RemediationActions", "Remediator"]

log = logging.getLogger("courtyard.telemetry")

MAX_REASON = 300  # characters of an action's error kept in the audit trail
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class RemediationActions(Protocol):
    """What the lifecycle can do for a remediation; each returns one line for the audit."""

    async def restart(self, app: str) -> str: ...

    async def rollback(self, app: str) -> str: ...

    async def scale(self, app: str) -> str: ...


class Remediator:
    """Runs the declared actions of a firing, unsilenced alert (the engine never hands it a
    silenced one)."""

    def __init__(self, actions: RemediationActions, audit: AuditSink, *, clock: Clock) -> None:
        self._actions = actions
        self._audit = audit
        self._clock = clock
        self._plans: dict[str, tuple[RemediationSpec, ...]] = {}
        self._last: dict[tuple[str, str], float] = {}  # (app, action) -> when it last ran

    def set_plan(self, app: str, specs: Sequence[RemediationSpec]) -> None:
        """The app's declarations (``Manifest.remediation_specs()``), replacing older ones."""
        self._plans[app] = tuple(specs)

    def forget(self, app: str) -> None:
        self._plans.pop(app, None)
        for key in [k for k in self._last if k[0] == app]:
            del self._last[key]

    def plan(self, app: str) -> tuple[RemediationSpec, ...]:
        return self._plans.get(app, ())

    async def on_fire(self, alert: Alert) -> None:
        """Run every declaration matching the alert: same severity, and the alert's SLO or
        none named."""
        if alert.state != "firing":
            return
        matching = [
            spec
            for spec in self._plans.get(alert.app, ())
            if spec.severity == alert.severity and spec.slo in (None, alert.slo)
        ]
        if not matching:
            await self._record("remediation.skip", alert, "success", "no-actions", {"action": None})
            return
        for spec in matching:
            await self._run(spec, alert)

    async def _run(self, spec: RemediationSpec, alert: Alert) -> None:
        now = self._clock.time()
        key = (alert.app, spec.action)
        last = self._last.get(key)
        if last is not None and now - last < spec.cooldown:
            await self._record(
                "remediation.skip",
                alert,
                "success",
                "cooldown",
                {
                    "action": spec.action,
                    "lastRunAgo": int(now - last),
                    "cooldown": int(spec.cooldown),
                },
            )
            return
        # Taken before the action runs, so an alert firing meanwhile finds the cooldown.
        self._last[key] = now
        try:
            if spec.action == "page":
                result = "paged: the notification is the action"
            else:
                result = await getattr(self._actions, spec.action)(alert.app)
        except Exception as exc:
            lines = str(exc).splitlines()
            text = _CONTROL.sub(" ", lines[0]) if lines else type(exc).__name__
            log.warning("remediation %s of %s failed: %s", spec.action, alert.app, text)
            await self._record(
                "remediation.run", alert, "failure", text[:MAX_REASON], {"action": spec.action}
            )
            return
        await self._record(
            "remediation.run",
            alert,
            "success",
            None,
            {"action": spec.action, "result": str(result)[:MAX_REASON]},
        )

    async def _record(
        self,
        action: str,
        alert: Alert,
        outcome: Outcome,
        reason: str | None,
        details: dict[str, Any],
    ) -> None:
        event = AuditEvent(
            actor=SYSTEM,
            action=action,
            target=f"app/{alert.app}",
            outcome=outcome,
            reason=reason,
            details={"alert": alert.id, "fingerprint": alert.fingerprint, **details},
        )
        try:
            await self._audit.record(event)
        except Exception:
            log.exception("could not audit %s of %s", action, alert.fingerprint)
