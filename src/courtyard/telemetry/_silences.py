"""Silences: an operator mutes an app's alerts for a while (a planned migration, a known
incident) without turning its SLOs off. Muted alerts still change state and are audited; they
are neither notified nor remediated (Alertmanager's silences, by app, SLO and severity).

``SilenceStore`` keeps them across restarts: in memory (tests, dev nodes) or in the platform
database (table ``alert_silences``, migration 0007).
"""

from __future__ import annotations

import builtins
import threading
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Row, delete, insert, select

from courtyard.contracts import Severity
from courtyard.store import Database
from courtyard.store._schema_alerts import alert_silences_table

__all__ = ["MemorySilenceStore", "Silence", "SilenceStore", "SqlSilenceStore"]

_S = alert_silences_table.c


@dataclass(frozen=True, slots=True)
class Silence:
    """Mutes the alerts of ``app`` (of one SLO and one severity when given) until ``ends_at``."""

    id: str
    app: str
    slo: str | None
    severity: Severity | None
    starts_at: float
    ends_at: float
    comment: str
    created_by: str

    def matches(self, app: str, slo: str, severity: str) -> bool:
        return (
            self.app == app
            and (self.slo is None or self.slo == slo)
            and (self.severity is None or self.severity == severity)
        )

    def is_active(self, now: float) -> bool:
        return self.starts_at <= now < self.ends_at

    def document(self) -> dict[str, Any]:
        """The API's JSON form."""
        return {
            "id": self.id,
            "app": self.app,
            "slo": self.slo,
            "severity": self.severity,
            "startsAt": self.starts_at,
            "endsAt": self.ends_at,
            "comment": self.comment,
            "createdBy": self.created_by,
        }


class SilenceStore(Protocol):
    """Persistence of silences; methods are synchronous and thread-safe (the engine runs them
    in a worker thread)."""

    def add(self, silence: Silence) -> None: ...

    def remove(self, silence_id: str) -> Silence | None:
        """Delete a silence; the deleted one, or None if there was none by that id."""
        ...

    def list(self) -> builtins.list[Silence]: ...


class MemorySilenceStore:
    """A :class:`SilenceStore` in a dict."""

    def __init__(self) -> None:
        self._silences: dict[str, Silence] = {}
        self._lock = threading.Lock()

    def add(self, silence: Silence) -> None:
        with self._lock:
            self._silences[silence.id] = silence

    def remove(self, silence_id: str) -> Silence | None:
        with self._lock:
            return self._silences.pop(silence_id, None)

    def list(self) -> builtins.list[Silence]:
        with self._lock:
            return sorted(self._silences.values(), key=lambda s: (s.starts_at, s.id))


class SqlSilenceStore:
    """A :class:`SilenceStore` in the platform database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def add(self, silence: Silence) -> None:
        with self._db.begin() as connection:
            connection.execute(
                insert(alert_silences_table).values(
                    id=silence.id,
                    app=silence.app,
                    slo=silence.slo,
                    severity=silence.severity,
                    starts_at=silence.starts_at,
                    ends_at=silence.ends_at,
                    comment=silence.comment,
                    created_by=silence.created_by,
                )
            )

    def remove(self, silence_id: str) -> Silence | None:
        with self._db.begin() as connection:
            row = connection.execute(
                select(alert_silences_table).where(_S.id == silence_id)
            ).first()
            if row is None:
                return None
            connection.execute(delete(alert_silences_table).where(_S.id == silence_id))
            return _silence_from(row)

    def list(self) -> builtins.list[Silence]:
        with self._db.read() as connection:
            rows = connection.execute(
                select(alert_silences_table).order_by(_S.starts_at, _S.id)
            ).all()
        return [_silence_from(row) for row in rows]


def _silence_from(row: Row[Any]) -> Silence:
    severity = row.severity if row.severity in ("page", "ticket") else None
    return Silence(
        id=row.id,
        app=row.app,
        slo=row.slo,
        severity=severity,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        comment=row.comment,
        created_by=row.created_by,
    )
