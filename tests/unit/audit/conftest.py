"""Audit fixtures: every store backend (memory, SQLite, PostgreSQL), events, logs on a FakeClock.

The PostgreSQL backend is marked integration; each of its tests gets a fresh schema (via
``search_path``) that is dropped afterwards.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from backends import BACKENDS, sql_database
from courtyard.audit import (
    Actor,
    AuditConfig,
    AuditEvent,
    AuditLog,
    AuditStore,
    MemoryAuditStore,
    SqlAuditStore,
)
from courtyard.core import FakeClock
from courtyard.store import Database

MakeEvent = Callable[..., AuditEvent]


@pytest.fixture(params=BACKENDS)
def audit_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AuditStore]:
    """Each audit store backend, empty."""
    if request.param == "memory":
        yield MemoryAuditStore()
        return
    with sql_database(request, tmp_path) as db:
        yield SqlAuditStore(db)


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    db = Database.open(f"sqlite:///{tmp_path / 'courtyard.db'}")
    try:
        yield db
    finally:
        db.close()


def _event(i: int = 0, **overrides: Any) -> AuditEvent:
    fields: dict[str, Any] = {
        "actor": Actor("user", f"user-{i % 3}@example.com", "password"),
        "action": "app.deploy",
        "target": f"app-{i % 2}",
        "outcome": "success",
        "reason": "rule:deployers",
        "request_id": f"req-{i}",
        "details": {"n": i},
    }
    fields.update(overrides)
    return AuditEvent(**fields)


@pytest.fixture
def make_event() -> MakeEvent:
    """``make_event(i, **overrides)``: a valid event, varied by ``i``."""
    return _event


def _crash(log: AuditLog) -> None:
    # The log's two tasks are what a dying process loses: nothing more is committed or signed.
    for task in (log._writer, log._ticker):
        task.cancel()
    log._closed = True


@pytest.fixture
def crash() -> Callable[[AuditLog], None]:
    """``crash(log)``: stop a log the way ``kill -9`` would, without flushing or signing."""
    return _crash


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=1_700_000_000.0)


@pytest.fixture
def config(tmp_path: Path) -> AuditConfig:
    return AuditConfig(tmp_path / "data", checkpoint_every=10)


@pytest.fixture
async def log(
    config: AuditConfig, audit_store: AuditStore, clock: FakeClock
) -> AsyncIterator[AuditLog]:
    """An open log on each backend, checkpointing every 10 entries; closed afterwards."""
    opened = await AuditLog.open(config, audit_store, clock=clock)
    try:
        yield opened
    finally:
        await opened.aclose()
