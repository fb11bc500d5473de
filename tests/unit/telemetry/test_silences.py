"""Silence stores: one suite for the memory and the SQL backend (SQLite, migrated), and the
engine keeping its silences across a restart on the database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from courtyard.core import FakeClock
from courtyard.store import Database
from courtyard.telemetry._alerts import AlertEngine
from courtyard.telemetry._silences import (
    MemorySilenceStore,
    Silence,
    SilenceStore,
    SqlSilenceStore,
)
from fakes import RecordingAudit


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    db = Database.open(f"sqlite:///{tmp_path / 'courtyard.db'}")
    try:
        yield db
    finally:
        db.close()


@pytest.fixture(params=["memory", "sql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SilenceStore]:
    if request.param == "memory":
        yield MemorySilenceStore()
        return
    db = Database.open(f"sqlite:///{tmp_path / 'courtyard.db'}")
    try:
        yield SqlSilenceStore(db)
    finally:
        db.close()


def silence(id: str, starts_at: float = 100.0, **changes: object) -> Silence:
    values: dict[str, object] = {
        "id": id,
        "app": "shop",
        "slo": None,
        "severity": None,
        "starts_at": starts_at,
        "ends_at": starts_at + 7200,
        "comment": "planned migration",
        "created_by": "u_admin",
    }
    values.update(changes)
    return Silence(**values)  # type: ignore[arg-type]


def test_add_list_remove(store: SilenceStore) -> None:
    first = silence("b1", 100.0, slo="availability", severity="page")
    second = silence("a2", 200.0, app="blog", comment="ünïcode ok")
    store.add(second)
    store.add(first)
    assert store.list() == [first, second]  # by start time
    assert store.remove("b1") == first
    assert store.remove("b1") is None
    assert store.list() == [second]


def test_matching() -> None:
    any_alert = silence("1")
    assert any_alert.matches("shop", "latency", "ticket")
    assert not any_alert.matches("blog", "latency", "ticket")
    narrow = silence("2", slo="latency", severity="page")
    assert narrow.matches("shop", "latency", "page")
    assert not narrow.matches("shop", "latency", "ticket")
    assert not narrow.matches("shop", "availability", "page")
    assert narrow.is_active(100.0) and not narrow.is_active(7300.0)


class NoAlerts:
    def slos(self, app: str | None = None) -> list[object]:
        return []

    def burn_rate(self, spec: object, window: float) -> tuple[float, int]:
        return 0.0, 0


class NoNotifier:
    def notify(self, alert: object) -> None:
        return None

    async def drain(self) -> None:
        return None


async def test_silences_survive_a_restart_on_the_database(database: Database) -> None:
    clock = FakeClock(1_000_000.0)

    def engine() -> AlertEngine:
        return AlertEngine(
            NoAlerts(),  # type: ignore[arg-type]
            NoNotifier(),
            None,
            RecordingAudit(),
            clock=clock,
            silences=SqlSilenceStore(database),
        )

    first = engine()
    kept = await first.silence("shop", until=clock.time() + 3600, comment="x", created_by="a")
    await clock.advance(1)
    ended = await first.silence("blog", until=clock.time() + 60, comment="y", created_by="a")
    second = engine()
    await second.load()
    assert second.silences() == [kept, ended]
    await clock.advance(60)
    await second.evaluate()  # the ended one is deleted
    assert SqlSilenceStore(database).list() == [kept]
