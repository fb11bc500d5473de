"""The audit trail on the machine's PostgreSQL.

The store's behaviour is covered by the conformance suite in tests/unit/audit (its
``postgresql`` parameter is marked integration); this file covers the whole log there: a
trail written, proved, archived and verified; a second writer refused instead of forking the
trail; tampering through SQL caught.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text

from courtyard.audit import (
    Actor,
    AuditConfig,
    AuditEvent,
    AuditLog,
    AuditWriteFailed,
    SqlAuditStore,
    verify,
)
from courtyard.store import Database

pytestmark = pytest.mark.integration


@pytest.fixture
def url(postgres_url: str) -> str:
    """This module's tests take the shared fresh-schema URL as ``url``."""
    return postgres_url


def event(i: int) -> AuditEvent:
    return AuditEvent(
        Actor("user", f"user-{i % 5}", "password"),
        "app.deploy",
        f"app-{i % 3}",
        "success",
        details={"i": i, "password": "never stored"},
    )


async def test_a_trail_on_postgres_end_to_end(url: str, tmp_path: Path) -> None:
    db = Database.open(url)
    try:
        config = AuditConfig(tmp_path, checkpoint_every=50)
        log = await AuditLog.open(config, SqlAuditStore(db))
        for start in range(0, 600, 100):
            await asyncio.gather(*(log.record(event(i)) for i in range(start, start + 100)))
        assert [e.seq for e in await log.query(actor="user-3", action="app.", limit=3)] == [
            4,
            9,
            14,
        ]
        segment = await log.archive(before_seq=300)
        assert segment is not None and segment.first_seq == 1
        for seq in (segment.last_seq + 1, 512, 600):
            assert (await log.proof(seq)).is_valid()
        report = await log.verify()
        assert report.ok and report.entries == 600, report
        await log.aclose()
        again = await AuditLog.open(config, SqlAuditStore(db))
        assert (await again.record(event(600))).seq == 601
        await again.aclose()
    finally:
        db.close()


async def test_a_second_writer_is_refused_not_forked(url: str, tmp_path: Path) -> None:
    """Two control-plane replicas must not both write one trail: the loser's batch fails."""
    first_db, second_db = Database.open(url), Database.open(url)
    try:
        config = AuditConfig(tmp_path)
        first = await AuditLog.open(config, SqlAuditStore(first_db))
        second = await AuditLog.open(config, SqlAuditStore(second_db))
        await first.record(event(0))
        with pytest.raises(AuditWriteFailed):
            await second.record(event(1))
        await first.record(event(2))
        await first.aclose()
        await second.aclose()
        report = verify(
            SqlAuditStore(first_db),
            public_key=first.public_key,
            checkpoints_file=config.checkpoints_file,
        )
        assert report.ok and report.entries == 2, report
    finally:
        first_db.close()
        second_db.close()


async def test_tampering_through_sql_is_caught(url: str, tmp_path: Path) -> None:
    db = Database.open(url)
    try:
        config = AuditConfig(tmp_path, checkpoint_every=10)
        log = await AuditLog.open(config, SqlAuditStore(db))
        for i in range(30):
            await log.record(event(i))
        await log.aclose()
        with db.begin() as connection:
            connection.execute(text("UPDATE audit_entries SET actor_id = 'someone' WHERE seq = 12"))
        report = verify(
            SqlAuditStore(db), public_key=log.public_key, checkpoints_file=config.checkpoints_file
        )
        assert (report.ok, report.first_bad_seq, report.problem) == (False, 12, "changed")
        with db.begin() as connection:
            connection.execute(text("DELETE FROM audit_entries WHERE seq > 25"))
            connection.execute(text("DELETE FROM audit_checkpoints WHERE tree_size > 20"))
            connection.execute(text("UPDATE audit_entries SET actor_id = 'user-1' WHERE seq = 12"))
        report = verify(
            SqlAuditStore(db), public_key=log.public_key, checkpoints_file=config.checkpoints_file
        )
        assert (report.first_bad_seq, report.problem) == (26, "rolled-back"), report
    finally:
        db.close()
