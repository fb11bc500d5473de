"""SLO alerts: multiwindow, multi-burn-rate rules evaluated on a schedule, with states,
deduplication, silences, notifications and the runbook actions they trigger.

An alert is one (app, SLO, severity). It fires when any rule of its severity holds — the burn
rate over both the long and the short window reaches the rule's factor and the short window
saw at least ``min_events`` events (a minimum-traffic guard: three errors out of five requests
at night are not an outage) — and resolves when none holds. Each transition is audited and
notified once; while it stays firing nothing is repeated (Alertmanager's deduplication).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from courtyard.audit import Actor, AuditEvent, AuditReceipt
from courtyard.contracts import Severity, SloSpec
from courtyard.core import Clock
from courtyard.telemetry._slo import BurnRule, burn_rules, window_label

log = logging.getLogger("courtyard.telemetry")

SYSTEM = Actor(kind="system", id="courtyard")
_SEVERITIES: tuple[Severity, ...] = ("page", "ticket")


class BurnSource(Protocol):
    """What the engine reads (courtyard.telemetry.Telemetry)."""

    def slos(self, app: str | None = None) -> list[SloSpec]: ...

    def burn_rate(self, spec: SloSpec, window: float) -> tuple[float, int]: ...


class Audit(Protocol):
    async def record(self, event: AuditEvent) -> AuditReceipt: ...


class AlertListener(Protocol):
    """Told of every transition (notifier, remediator)."""

    async def transition(self, alert: Alert) -> None: ...


@dataclass(frozen=True, slots=True)
class AlertConfig:
    interval: float = 10.0  # seconds between evaluations
    min_events: int = 10  # events the short window needs before a rule may hold
    keep_resolved: int = 100  # resolved alerts kept for listing


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert's state; ``id`` is new each time it fires."""

    id: str
    app: str
    slo: str
    severity: Severity
    state: Literal["firing", "resolved"]
    started_at: float
    resolved_at: float | None = None
    rule: dict[str, Any] = field(default_factory=dict)  # the rule that held, its burn rates
    silenced: bool = False

    @property
    def fingerprint(self) -> str:
        return f"{self.app}/{self.slo}/{self.severity}"

    def summary(self) -> str:
        verb = "is burning its error budget" if self.state == "firing" else "recovered"
        return f"{self.app}: SLO {self.slo} {verb} ({self.severity})"

    def document(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "fingerprint": self.fingerprint,
            "app": self.app,
            "slo": self.slo,
            "severity": self.severity,
            "state": self.state,
            "startsAt": self.started_at,
            "endsAt": self.resolved_at,
            "rule": dict(self.rule),
            "silenced": self.silenced,
            "summary": self.summary(),
        }


@dataclass(frozen=True, slots=True)
class Silence:
    """Mutes notifications and runbook actions of matching alerts until ``until``."""

    id: str
    app: str
    slo: str | None
    severity: Severity | None
    until: float
    comment: str
    created_by: str
    created_at: float

    def matches(self, app: str, slo: str, severity: str) -> bool:
        return (
            self.app == app
            and (self.slo is None or self.slo == slo)
            and (self.severity is None or self.severity == severity)
        )

    def document(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "app": self.app,
            "slo": self.slo,
            "severity": self.severity,
            "until": self.until,
            "comment": self.comment,
            "createdBy": self.created_by,
            "createdAt": self.created_at,
        }


class AlertEngine:
    """Evaluates every SLO's rules, keeps alert states and tells the listeners."""

    def __init__(
        self,
        source: BurnSource,
        audit: Audit,
        *,
        clock: Clock,
        listeners: Sequence[AlertListener] = (),
        config: AlertConfig | None = None,
    ) -> None:
        self._source = source
        self._audit = audit
        self._clock = clock
        self._listeners = list(listeners)
        self.config = config or AlertConfig()
        self._firing: dict[str, Alert] = {}
        self._resolved: list[Alert] = []
        self._silences: dict[str, Silence] = {}
        self._lock = asyncio.Lock()

    def add_listener(self, listener: AlertListener) -> None:
        self._listeners.append(listener)

    async def run(self) -> None:
        """Evaluate every ``interval`` seconds until cancelled."""
        while True:
            await self._clock.sleep(self.config.interval)
            try:
                await self.evaluate()
            except Exception:  # the next evaluation retries; the loop must not end
                log.exception("alert evaluation failed")

    async def evaluate(self) -> list[Alert]:
        """One pass over every SLO; returns the alerts that changed state."""
        async with self._lock:
            now = self._clock.time()
            await self._expire_silences(now)
            changed: list[Alert] = []
            seen: set[str] = set()
            for spec in self._source.slos():
                for severity in _SEVERITIES:
                    key = f"{spec.app}/{spec.name}/{severity}"
                    seen.add(key)
                    held = self._holding_rule(spec, severity)
                    current = self._firing.get(key)
                    if held is not None and current is None:
                        alert = Alert(
                            id=secrets.token_hex(8),
                            app=spec.app,
                            slo=spec.name,
                            severity=severity,
                            state="firing",
                            started_at=now,
                            rule=held,
                            silenced=self._silenced(spec.app, spec.name, severity),
                        )
                        self._firing[key] = alert
                        changed.append(alert)
                    elif held is None and current is not None:
                        changed.append(self._resolve(key, now))
            for key in [k for k in self._firing if k not in seen]:  # the SLO was removed
                changed.append(self._resolve(key, now))
            for alert in changed:
                await self._record(alert)
                for listener in self._listeners:
                    try:
                        await listener.transition(alert)
                    except Exception:
                        log.exception("alert listener failed for %s", alert.fingerprint)
            return changed

    def alerts(self, *, include_resolved: bool = False) -> list[Alert]:
        firing = sorted(self._firing.values(), key=lambda a: a.started_at)
        if not include_resolved:
            return firing
        return firing + list(reversed(self._resolved))

    # -- silences --------------------------------------------------------------------------

    async def silence(
        self,
        app: str,
        *,
        slo: str | None,
        severity: Severity | None,
        duration: float,
        comment: str,
        created_by: str,
    ) -> Silence:
        now = self._clock.time()
        silence = Silence(
            id=secrets.token_hex(8),
            app=app,
            slo=slo,
            severity=severity,
            until=now + duration,
            comment=comment,
            created_by=created_by,
            created_at=now,
        )
        self._silences[silence.id] = silence
        for key, alert in self._firing.items():
            if silence.matches(alert.app, alert.slo, alert.severity):
                self._firing[key] = replace(alert, silenced=True)
        await self._audit.record(
            AuditEvent(
                actor=Actor(kind="user", id=created_by) if created_by else SYSTEM,
                action="silence.create",
                target=f"app/{app}",
                outcome="success",
                details={
                    "id": silence.id,
                    "slo": slo,
                    "severity": severity,
                    "seconds": round(duration),
                    "comment": comment[:500],
                },
            )
        )
        return silence

    async def expire(self, silence_id: str, *, by: str = "") -> bool:
        silence = self._silences.pop(silence_id, None)
        if silence is None:
            return False
        await self._audit.record(
            AuditEvent(
                actor=Actor(kind="user", id=by) if by else SYSTEM,
                action="silence.expire",
                target=f"app/{silence.app}",
                outcome="success",
                details={"id": silence.id},
            )
        )
        return True

    def silences(self) -> list[Silence]:
        now = self._clock.time()
        return [s for s in self._silences.values() if s.until > now]

    # -- internals -------------------------------------------------------------------------

    def _holding_rule(self, spec: SloSpec, severity: str) -> dict[str, Any] | None:
        for rule in burn_rules(spec.window):
            if rule.severity != severity:
                continue
            short, short_events = self._source.burn_rate(spec, rule.short)
            if short_events < self.config.min_events or short < rule.factor:
                continue
            long, _ = self._source.burn_rate(spec, rule.long)
            if long >= rule.factor:
                return _describe(rule, long, short)
        return None

    def _silenced(self, app: str, slo: str, severity: str) -> bool:
        now = self._clock.time()
        return any(s.until > now and s.matches(app, slo, severity) for s in self._silences.values())

    def _resolve(self, key: str, now: float) -> Alert:
        alert = self._firing.pop(key)
        resolved = replace(
            alert,
            state="resolved",
            resolved_at=now,
            silenced=self._silenced(alert.app, alert.slo, alert.severity),
        )
        self._resolved.append(resolved)
        del self._resolved[: -self.config.keep_resolved]
        return resolved

    async def _expire_silences(self, now: float) -> None:
        for silence in [s for s in self._silences.values() if s.until <= now]:
            del self._silences[silence.id]
            await self._audit.record(
                AuditEvent(
                    actor=SYSTEM,
                    action="silence.expire",
                    target=f"app/{silence.app}",
                    outcome="success",
                    details={"id": silence.id, "reason": "ended"},
                )
            )

    async def _record(self, alert: Alert) -> None:
        action = "alert.fire" if alert.state == "firing" else "alert.resolve"
        await self._audit.record(
            AuditEvent(
                actor=SYSTEM,
                action=action,
                target=f"app/{alert.app}",
                outcome="success",
                details={
                    "alert": alert.id,
                    "fingerprint": alert.fingerprint,
                    "severity": alert.severity,
                    "silenced": alert.silenced,
                    # the audit trail records no fractions (canonical JSON): numbers as text
                    "rule": {key: str(value) for key, value in alert.rule.items()},
                },
            )
        )


def _describe(rule: BurnRule, long: float, short: float) -> dict[str, Any]:
    return {
        "long": window_label(rule.long),
        "short": window_label(rule.short),
        "factor": round(rule.factor, 4),
        "burnLong": round(long, 3),
        "burnShort": round(short, 3),
    }
