"""SLO alerts: multiwindow, multi-burn-rate rules evaluated on a schedule, with states,
deduplication, silences, and the notifications and runbook actions a transition starts.

An alert is one (app, SLO, severity). It fires when any rule of its severity holds — the burn
rate over both the long and the short window reaches the rule's factor (Google SRE workbook,
"Alerting on SLOs", §6) and the short window saw at least ``min_events`` events (a
minimum-traffic guard: two failures out of three requests at night are not an outage) — and
resolves when none holds. Each transition is audited and notified once; while an alert stays
firing nothing is repeated (Alertmanager's deduplication by fingerprint).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

from courtyard.audit import Actor, AuditEvent, AuditReceipt
from courtyard.contracts import Severity, SloSpec
from courtyard.core import Clock
from courtyard.telemetry._silences import MemorySilenceStore, Silence, SilenceStore
from courtyard.telemetry._slo import BurnRule, burn_rules

__all__ = [
    "SEVERITIES",
    "SYSTEM",
    "Alert",
    "AlertConfig",
    "AlertEngine",
    "AuditSink",
    "Burn",
    "BurnSource",
]

log = logging.getLogger("courtyard.telemetry")

SYSTEM = Actor(kind="system", id="courtyard")
SEVERITIES: tuple[Severity, ...] = ("page", "ticket")
AlertState = Literal["firing", "resolved"]


class BurnSource(Protocol):
    """What the engine reads: :class:`courtyard.telemetry.Telemetry`."""

    def slos(self, app: str | None = None) -> list[SloSpec]: ...

    def burn_rate(self, spec: SloSpec, window: float) -> tuple[float, int]:
        """(burn rate, events) over the trailing ``window`` seconds."""
        ...


class AuditSink(Protocol):
    async def record(self, event: AuditEvent) -> AuditReceipt: ...


class AlertNotifier(Protocol):
    """Sends a transition to the channels without holding up the evaluation."""

    def notify(self, alert: Alert) -> None: ...

    async def drain(self) -> None: ...


class AlertRemediator(Protocol):
    async def on_fire(self, alert: Alert) -> None: ...


@dataclass(frozen=True, slots=True)
class AlertConfig:
    interval: float = 10.0  # seconds between two evaluations
    min_events: int = 10  # events the short window needs before a rule may hold
    keep_resolved: int = 100  # resolved alerts kept for listing


def window_label(seconds: float) -> str:
    """ "5m", "6h", "3d" for a window of whole minutes, hours or days."""
    if seconds % 86400 == 0:
        return f"{int(seconds // 86400)}d"
    if seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"


@dataclass(frozen=True, slots=True)
class Burn:
    """The rule that held (or last held) and the burn rates it saw."""

    long: str  # window labels, e.g. "1h"
    short: str
    factor: float  # the rule's threshold
    long_rate: float
    short_rate: float
    short_events: int

    @classmethod
    def of(cls, rule: BurnRule, long_rate: float, short_rate: float, events: int) -> Burn:
        return cls(
            window_label(rule.long),
            window_label(rule.short),
            rule.factor,
            long_rate,
            short_rate,
            events,
        )

    def document(self) -> dict[str, Any]:
        return {
            "long": self.long,
            "short": self.short,
            "factor": round(self.factor, 4),
            "longRate": round(self.long_rate, 3),
            "shortRate": round(self.short_rate, 3),
            "shortEvents": self.short_events,
        }

    def audit_details(self) -> dict[str, Any]:
        """The audit trail records no fractional numbers: rates as decimal strings."""
        return {
            "long": self.long,
            "short": self.short,
            "factor": f"{self.factor:.4g}",
            "longRate": f"{self.long_rate:.4g}",
            "shortRate": f"{self.short_rate:.4g}",
            "shortEvents": self.short_events,
        }

    def text(self) -> str:
        """ "1000x over 1h and 5m (threshold 13.44x)" """
        return (
            f"burn {self.long_rate:.3g}x over {self.long}, {self.short_rate:.3g}x over "
            f"{self.short} (threshold {self.factor:.4g}x)"
        )


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert's state; ``id`` is new each time it fires, ``fingerprint`` never changes."""

    id: str
    app: str
    slo: str
    severity: Severity
    state: AlertState
    started_at: float
    resolved_at: float | None = None
    burn: Burn | None = None
    silenced: bool = False

    @property
    def fingerprint(self) -> str:
        return f"{self.app}/{self.slo}/{self.severity}"

    def summary(self) -> str:
        verb = "is burning its error budget" if self.state == "firing" else "recovered"
        return f"{self.app}: SLO {self.slo} {verb} ({self.severity})"

    def document(self) -> dict[str, Any]:
        """The API's (and the webhook's) JSON form."""
        return {
            "id": self.id,
            "fingerprint": self.fingerprint,
            "app": self.app,
            "slo": self.slo,
            "severity": self.severity,
            "state": self.state,
            "startedAt": self.started_at,
            "resolvedAt": self.resolved_at,
            "burn": self.burn.document() if self.burn is not None else None,
            "silenced": self.silenced,
            "summary": self.summary(),
        }


class AlertEngine:
    """Evaluates every SLO's burn-rate rules, keeps alert states and silences, and hands
    transitions to the notifier and the remediator."""

    def __init__(
        self,
        source: BurnSource,
        notifier: AlertNotifier,
        remediator: AlertRemediator | None,
        audit: AuditSink,
        *,
        clock: Clock,
        config: AlertConfig | None = None,
        silences: SilenceStore | None = None,
    ) -> None:
        self._source = source
        self._notifier = notifier
        self._remediator = remediator
        self._audit = audit
        self.clock = clock
        self.config = config or AlertConfig()
        self._store: SilenceStore = silences if silences is not None else MemorySilenceStore()
        self._firing: dict[str, Alert] = {}  # by fingerprint
        self._notified: set[str] = set()  # ids of firing alerts whose firing was notified
        self._resolved: list[Alert] = []  # oldest first
        self._silences: dict[str, Silence] = {}
        self._loaded = False
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    async def load(self) -> None:
        """Read the stored silences (done by the first evaluation if not called)."""
        stored = await asyncio.to_thread(self._store.list)
        self._silences = {s.id: s for s in stored}
        self._loaded = True

    async def run(self) -> None:
        """Evaluate every ``interval`` seconds until cancelled."""
        while True:
            await self.clock.sleep(self.config.interval)
            try:
                await self.evaluate()
            except Exception:  # the next evaluation tries again; the loop must not end
                log.exception("alert evaluation failed")

    async def evaluate(self) -> list[Alert]:
        """One pass over every SLO; returns the alerts that changed state.

        A lock makes concurrent calls take turns, so no transition is made twice.
        """
        async with self._lock:
            if not self._loaded:
                await self.load()
            now = self.clock.time()
            await self._end_silences(now)
            changed: list[Alert] = []
            unmuted: list[Alert] = []
            seen: set[str] = set()
            for spec in self._source.slos():
                for severity in SEVERITIES:
                    fingerprint = f"{spec.app}/{spec.name}/{severity}"
                    seen.add(fingerprint)
                    try:
                        burn = self._holding(spec, severity)
                    except Exception:  # this SLO keeps its state; the others are evaluated
                        log.exception("evaluating %s failed", fingerprint)
                        continue
                    current = self._firing.get(fingerprint)
                    silenced = self._is_silenced(spec.app, spec.name, severity, now)
                    if burn is not None and current is None:
                        alert = Alert(
                            id=secrets.token_hex(8),
                            app=spec.app,
                            slo=spec.name,
                            severity=severity,
                            state="firing",
                            started_at=now,
                            burn=burn,
                            silenced=silenced,
                        )
                        self._firing[fingerprint] = alert
                        changed.append(alert)
                    elif burn is not None and current is not None:
                        # Still firing: no transition, only fresher numbers.
                        updated = replace(current, burn=burn, silenced=silenced)
                        self._firing[fingerprint] = updated
                        if current.silenced and not silenced and current.id not in self._notified:
                            unmuted.append(updated)
                    elif burn is None and current is not None:
                        changed.append(self._resolve(fingerprint, now))
            for fingerprint in [f for f in self._firing if f not in seen]:  # SLO removed
                changed.append(self._resolve(fingerprint, now))
            for alert in changed:
                await self._record(alert)
                self._dispatch(alert)
            for alert in unmuted:
                # Its silence ended while it still fires: announce it now (as Alertmanager
                # does), and run its runbook actions, which the silence held back.
                self._dispatch(alert)
            return changed

    def alerts(self, include_resolved: bool = False) -> list[Alert]:
        """Firing alerts, oldest first; then, if asked, resolved ones, newest first."""
        firing = sorted(self._firing.values(), key=lambda a: (a.started_at, a.fingerprint))
        if not include_resolved:
            return firing
        return firing + self._resolved[::-1]

    def firing_count(self, app: str | None = None) -> int:
        """How many alerts fire (for one app, or in the fleet)."""
        return sum(1 for a in self._firing.values() if app is None or a.app == app)

    def firing_by_app(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for alert in self._firing.values():
            counts[alert.app] = counts.get(alert.app, 0) + 1
        return counts

    async def drain(self) -> None:
        """Wait for the runbook actions and notifications under way (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self._notifier.drain()

    async def aclose(self) -> None:
        """Cancel runbook actions under way (the notifier is closed by its owner)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- silences --------------------------------------------------------------------------

    async def silence(
        self,
        app: str,
        *,
        slo: str | None = None,
        severity: Severity | None = None,
        until: float,
        comment: str,
        created_by: str,
        actor: Actor | None = None,
    ) -> Silence:
        """Mute matching alerts from now until ``until``; audited as ``silence.create``."""
        async with self._lock:
            if not self._loaded:
                await self.load()
            now = self.clock.time()
            silence = Silence(
                id=secrets.token_hex(8),
                app=app,
                slo=slo,
                severity=severity,
                starts_at=now,
                ends_at=until,
                comment=comment,
                created_by=created_by,
            )
            await asyncio.to_thread(self._store.add, silence)
            self._silences[silence.id] = silence
            for fingerprint, alert in self._firing.items():
                if silence.matches(alert.app, alert.slo, alert.severity):
                    self._firing[fingerprint] = replace(alert, silenced=True)
            await self._audit_silence("silence.create", silence, actor, {})
            return silence

    async def expire(self, silence_id: str, *, actor: Actor | None = None) -> Silence | None:
        """End a silence now; the ended silence, or None if there is none by that id."""
        async with self._lock:
            if not self._loaded:
                await self.load()
            silence = await asyncio.to_thread(self._store.remove, silence_id)
            self._silences.pop(silence_id, None)
            if silence is None:
                return None
            await self._audit_silence("silence.expire", silence, actor, {"reason": "expired"})
            return silence

    def silences(self) -> list[Silence]:
        """Silences in force, oldest first."""
        now = self.clock.time()
        active = [s for s in self._silences.values() if s.ends_at > now]
        return sorted(active, key=lambda s: (s.starts_at, s.id))

    # -- internals -------------------------------------------------------------------------

    def _holding(self, spec: SloSpec, severity: Severity) -> Burn | None:
        """The first rule of ``severity`` that holds for ``spec``, with its burn rates."""
        for rule in burn_rules(spec.window):
            if rule.severity != severity:
                continue
            short_rate, events = self._source.burn_rate(spec, rule.short)
            if events < self.config.min_events or short_rate < rule.factor:
                continue
            long_rate, _ = self._source.burn_rate(spec, rule.long)
            if long_rate >= rule.factor:
                return Burn.of(rule, long_rate, short_rate, events)
        return None

    def _is_silenced(self, app: str, slo: str, severity: str, now: float) -> bool:
        return any(
            s.is_active(now) and s.matches(app, slo, severity) for s in self._silences.values()
        )

    def _resolve(self, fingerprint: str, now: float) -> Alert:
        alert = self._firing.pop(fingerprint)
        resolved = replace(
            alert,
            state="resolved",
            resolved_at=now,
            silenced=self._is_silenced(alert.app, alert.slo, alert.severity, now),
        )
        self._resolved.append(resolved)
        del self._resolved[: -self.config.keep_resolved or None]
        return resolved

    def _dispatch(self, alert: Alert) -> None:
        """Notify and remediate an unsilenced transition. A resolution is notified only when
        its firing was (no "resolved" for an alert nobody was told about)."""
        if alert.state == "resolved":
            was_notified = alert.id in self._notified
            self._notified.discard(alert.id)
            if was_notified and not alert.silenced:
                self._notifier.notify(alert)
            return
        if not alert.silenced:
            self._notified.add(alert.id)
            self._notifier.notify(alert)
            if self._remediator is not None:
                task = asyncio.create_task(self._remediate(self._remediator, alert))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _remediate(self, remediator: AlertRemediator, alert: Alert) -> None:
        try:
            await remediator.on_fire(alert)
        except Exception:
            log.exception("remediation of %s failed", alert.fingerprint)

    async def _end_silences(self, now: float) -> None:
        for silence in [s for s in self._silences.values() if s.ends_at <= now]:
            await asyncio.to_thread(self._store.remove, silence.id)
            del self._silences[silence.id]
            await self._audit_silence("silence.expire", silence, None, {"reason": "ended"})

    async def _record(self, alert: Alert) -> None:
        details: dict[str, Any] = {
            "alert": alert.id,
            "fingerprint": alert.fingerprint,
            "slo": alert.slo,
            "severity": alert.severity,
            "silenced": alert.silenced,
        }
        if alert.burn is not None:
            details["burn"] = alert.burn.audit_details()
        if alert.state == "resolved" and alert.resolved_at is not None:
            details["firedFor"] = int(alert.resolved_at - alert.started_at)
        await self._write(
            AuditEvent(
                actor=SYSTEM,
                action="alert.fire" if alert.state == "firing" else "alert.resolve",
                target=f"app/{alert.app}",
                outcome="success",
                details=details,
            )
        )

    async def _audit_silence(
        self, action: str, silence: Silence, actor: Actor | None, extra: dict[str, Any]
    ) -> None:
        details = {
            "silence": silence.id,
            "slo": silence.slo,
            "severity": silence.severity,
            "endsAt": int(silence.ends_at),
            "comment": silence.comment,
            "createdBy": silence.created_by,
            **extra,
        }
        event = AuditEvent(
            actor=actor or SYSTEM,
            action=action,
            target=f"app/{silence.app}",
            outcome="success",
            details=details,
        )
        if actor is None:
            await self._write(event)
        else:  # a person's change: an audit failure fails their request
            await self._audit.record(event)

    async def _write(self, event: AuditEvent) -> None:
        try:
            await self._audit.record(event)
        except Exception:  # a transition is not undone because the trail is unavailable
            log.exception("could not audit %s of %s", event.action, event.target)
