"""The platform database on SQLite: migrations on open, durable pragmas, many writer threads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Column, Integer, MetaData, Table, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from courtyard.store import Database, StoreError, apps_table, metadata, revisions_table

PLATFORM_TABLES = set(metadata.tables)  # the store owns every platform table


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'data' / 'courtyard.db'}"


def tables(db: Database) -> set[str]:
    with db.read() as connection:
        rows = connection.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {row[0] for row in rows}


def version(db: Database) -> list[str]:
    with db.read() as connection:
        return [row[0] for row in connection.exec_driver_sql("SELECT * FROM alembic_version")]


def test_opening_a_new_file_applies_migrations(url: str, tmp_path: Path) -> None:
    db = Database.open(url)
    try:
        assert (tmp_path / "data" / "courtyard.db").is_file()
        assert tables(db) == PLATFORM_TABLES | {"alembic_version"}
        assert version(db) == [Database.schema_head()]
        assert db.dialect == "sqlite"
    finally:
        db.close()


def test_migrations_match_the_schema(url: str) -> None:
    db = Database.open(url)
    try:
        with db.engine.connect() as connection:
            assert compare_metadata(MigrationContext.configure(connection), metadata) == []
    finally:
        db.close()


@pytest.mark.parametrize("transaction", ["begin", "read"])
def test_pragmas_are_set_on_every_connection(url: str, transaction: str) -> None:
    db = Database.open(url)
    try:
        seen = []
        # Hold several connections at once so the pool has to open new ones.
        connections = [db.engine.connect() for _ in range(4)]
        for connection in connections:
            seen.append(
                tuple(
                    connection.exec_driver_sql(f"PRAGMA {name}").scalar()
                    for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
                )
            )
            connection.close()
        assert seen == [("wal", 2, 1, 10000)] * 4  # synchronous 2 = FULL
        with getattr(db, transaction)() as connection:
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        db.close()


def test_reopening_is_idempotent_and_keeps_data(url: str) -> None:
    db = Database.open(url)
    with db.begin() as connection:
        connection.execute(insert(apps_table).values(app_row("kept")))
    db.close()
    for _ in range(3):
        db = Database.open(url)
        try:
            assert version(db) == [Database.schema_head()]
            assert tables(db) == PLATFORM_TABLES | {"alembic_version"}
            with db.read() as connection:
                assert connection.execute(select(apps_table.c.name)).scalars().all() == ["kept"]
        finally:
            db.close()


def app_row(name: str) -> dict[str, object]:
    return {
        "name": name,
        "kind": "Application",
        "owner": "team-a",
        "stage": "prototype",
        "current_revision": 1,
        "desired_state": "running",
        "created_at": 1.5,
        "updated_at": 2.5,
    }


def test_a_failed_transaction_writes_nothing(url: str) -> None:
    db = Database.open(url)
    try:
        with pytest.raises(RuntimeError), db.begin() as connection:
            connection.execute(insert(apps_table).values(app_row("ghost")))
            raise RuntimeError("changed my mind")
        with db.read() as connection:
            assert connection.execute(select(apps_table)).all() == []
    finally:
        db.close()


def test_foreign_keys_are_enforced(url: str) -> None:
    db = Database.open(url)
    try:
        row = {"app": "nobody", "number": 1, "digest": "d", "manifest": {}, "created_at": 0.0}
        with pytest.raises(IntegrityError), db.begin() as connection:
            connection.execute(insert(revisions_table).values(row))
    finally:
        db.close()


def test_sixteen_writer_threads_all_succeed(url: str) -> None:
    """Read-modify-write from 16 threads: BEGIN IMMEDIATE queues them, none fails or is lost."""
    db = Database.open(url)
    counters = Table("counters", MetaData(), Column("id", Integer, primary_key=True),
                     Column("value", Integer, nullable=False))  # fmt: skip
    counters.create(db.engine)
    with db.begin() as connection:
        connection.execute(insert(counters).values(id=1, value=0))
    errors: list[BaseException] = []
    start = threading.Barrier(16)

    def work() -> None:
        try:
            start.wait()
            for _ in range(25):
                with db.begin() as connection:
                    value = connection.execute(select(counters.c.value)).scalar_one()
                    connection.execute(update(counters).values(value=value + 1))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        with db.read() as connection:
            assert connection.execute(select(counters.c.value)).scalar_one() == 16 * 25
        assert db.integrity_check() == "ok"
    finally:
        db.close()


def test_a_reader_keeps_its_snapshot_while_a_writer_commits(url: str) -> None:
    db = Database.open(url)
    try:
        with db.read() as reader:
            assert reader.execute(select(apps_table)).all() == []
            with db.begin() as writer:  # not blocked by the open read (WAL)
                writer.execute(insert(apps_table).values(app_row("new")))
            assert reader.execute(select(apps_table)).all() == []
        with db.read() as reader:
            assert len(reader.execute(select(apps_table)).all()) == 1
    finally:
        db.close()


def test_integrity_check_on_a_sound_file(url: str) -> None:
    db = Database.open(url)
    try:
        assert db.integrity_check() == "ok"
    finally:
        db.close()


def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "courtyard.db"
    path.write_bytes(b"this is not sqlite" * 1000)
    with pytest.raises(StoreError, match="cannot open"):
        Database.open(f"sqlite:///{path}")


def test_a_schema_newer_than_this_code(url: str) -> None:
    db = Database.open(url)
    with db.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    db.close()
    with pytest.raises(StoreError, match="cannot migrate"):
        Database.open(url)


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        ("mysql://root@localhost/courtyard", "unsupported database"),
        ("sqlite://", "needs a file path"),
        ("sqlite:///:memory:", "needs a file path"),
        ("not a url", "not a database URL"),
        ("postgresql+asyncpg://u@h/db", "psycopg"),
    ],
)
def test_unsupported_urls(bad: str, words: str) -> None:
    with pytest.raises(StoreError, match=words):
        Database.open(bad)


def test_passwords_stay_out_of_messages_and_repr() -> None:
    with pytest.raises(StoreError) as caught:
        Database.open("mysql://user:s3cret@localhost/db")
    assert "s3cret" not in str(caught.value)


CHILD = """
import sys
from sqlalchemy import insert
from courtyard.store import Database, apps_table
db = Database.open(sys.argv[1])
for i in range(50):
    with db.begin() as connection:
        connection.execute(insert(apps_table).values(
            name=f"app-{i}", kind="Application", owner="t", stage="prototype",
            current_revision=1, desired_state="running", created_at=0.0, updated_at=0.0))
    print(i, flush=True)
sys.stdin.read()
"""


def test_acknowledged_writes_survive_kill_9(url: str) -> None:
    """A child commits, reports each commit, and is killed with SIGKILL mid-flight."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    assert child.stdout is not None
    acknowledged = -1
    for line in child.stdout:
        acknowledged = int(line)
        if acknowledged == 20:
            break
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stdout.close()
    assert child.stdin is not None
    child.stdin.close()
    db = Database.open(url)
    try:
        with db.read() as connection:
            names = set(connection.execute(select(apps_table.c.name)).scalars())
        assert {f"app-{i}" for i in range(acknowledged + 1)} <= names
        assert db.integrity_check() == "ok"
    finally:
        db.close()
