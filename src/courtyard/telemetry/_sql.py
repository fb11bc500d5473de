"""The minute series in the platform database (table ``telemetry_minutes``, SQLite or
PostgreSQL)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, and_, delete, insert, select, tuple_

from courtyard.store import Database
from courtyard.store._schema_telemetry import telemetry_minutes_table
from courtyard.telemetry._series import MinuteRow

_M = telemetry_minutes_table.c
_CHUNK = 400  # keys per DELETE ... IN (...), under SQLite's bound-parameter limit


class SqlMinuteStore:
    """A :class:`MinuteStore` on a :class:`courtyard.store.Database`."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def save(self, rows: Sequence[MinuteRow]) -> None:
        if not rows:
            return
        # Delete then insert in one transaction: a portable upsert on both dialects.
        with self._db.begin() as connection:
            for start in range(0, len(rows), _CHUNK):
                keys = [(row.app, row.minute) for row in rows[start : start + _CHUNK]]
                connection.execute(
                    delete(telemetry_minutes_table).where(tuple_(_M.app, _M.minute).in_(keys))
                )
            connection.execute(
                insert(telemetry_minutes_table),
                [
                    {
                        "app": row.app,
                        "minute": row.minute,
                        "total": row.total,
                        "errors": row.errors,
                        "latency": list(row.latency),
                    }
                    for row in rows
                ],
            )

    def load(self, since: int, app: str | None = None) -> list[MinuteRow]:
        condition = _M.minute >= since
        if app is not None:
            condition = and_(condition, _M.app == app)
        query = select(telemetry_minutes_table).where(condition).order_by(_M.app, _M.minute)
        with self._db.read() as connection:
            return [_row_from(row) for row in connection.execute(query)]

    def prune(self, before: int) -> None:
        with self._db.begin() as connection:
            connection.execute(delete(telemetry_minutes_table).where(_M.minute < before))

    def remove(self, app: str) -> None:
        with self._db.begin() as connection:
            connection.execute(delete(telemetry_minutes_table).where(_M.app == app))


def _row_from(row: Row[Any]) -> MinuteRow:
    latency = row.latency if isinstance(row.latency, list) else []
    return MinuteRow(
        app=row.app,
        minute=int(row.minute),
        total=int(row.total),
        errors=int(row.errors),
        latency=tuple(int(count) for count in latency),
    )
