"""One handle on the platform database: per-dialect engine set-up and migrations on open.

SQLite is the embedded default, so its connections are tuned for durable commits (WAL with
``synchronous=FULL``) and for many writer threads (``BEGIN IMMEDIATE`` plus a busy timeout).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import ConnectionPoolEntry, QueuePool

from courtyard.store._errors import StoreError

_MIGRATIONS = Path(__file__).parent / "migrations"

# Applied to every new SQLite connection. busy_timeout comes first so that switching to WAL
# waits for another opener instead of failing. FULL makes each commit fsync the WAL, so an
# acknowledged write survives power loss (https://sqlite.org/pragma.html#pragma_synchronous).
_SQLITE_PRAGMAS = (
    ("busy_timeout", "10000"),
    ("journal_mode", "WAL"),
    ("synchronous", "FULL"),
    ("foreign_keys", "ON"),
)

# Execution option that makes a SQLite transaction start DEFERRED (a plain read).
_READ_ONLY = "courtyard_read_only"

# Key of the PostgreSQL advisory lock that serializes migrations between processes.
_MIGRATION_LOCK = 0x436F757274


class Database:
    """The platform database: a thread-safe engine whose schema is at the newest migration.

    Open one with :meth:`open`; run its methods from threads (``asyncio.to_thread``).
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @classmethod
    def open(cls, url: str) -> Database:
        """Connect to ``url`` (``sqlite:///path`` or ``postgresql+psycopg://...``) and migrate it.

        Raises :class:`StoreError` for an unsupported URL, a file that is not a database, or a
        schema newer than this Courtyard knows.
        """
        try:
            parsed = make_url(url)
        except ArgumentError as exc:
            raise StoreError(f"not a database URL: {url!r}") from exc
        backend = parsed.get_backend_name()
        if backend == "sqlite":
            engine = _sqlite_engine(parsed)
        elif backend == "postgresql":
            engine = _postgres_engine(parsed)
        else:
            raise StoreError(
                f"unsupported database {_show(parsed)}: use sqlite:///<file> "
                "or postgresql+psycopg://<user>@<host>/<database>"
            )
        database = cls(engine)
        try:
            database._migrate()
        except BaseException:
            engine.dispose()
            raise
        return database

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine, for stores that build their own statements."""
        return self._engine

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._engine.dialect.name

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A write transaction, committed when the block ends and rolled back on an exception.

        On SQLite it starts with ``BEGIN IMMEDIATE``: writers queue for the lock up front
        rather than failing when a read lock cannot be upgraded.
        """
        with self._engine.begin() as connection:
            yield connection

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read transaction: a consistent snapshot that never blocks writers (WAL)."""
        with (
            self._engine.connect().execution_options(**{_READ_ONLY: True}) as connection,
            connection.begin(),
        ):
            yield connection

    def integrity_check(self) -> str:
        """``"ok"`` when the database is sound, else the problems SQLite reports, one a line.

        PostgreSQL checks its own pages, so it is always ``"ok"`` here.
        """
        if self.dialect != "sqlite":
            return "ok"
        with self.read() as connection:
            rows = [str(row[0]) for row in connection.exec_driver_sql("PRAGMA integrity_check")]
            keys = list(connection.exec_driver_sql("PRAGMA foreign_key_check"))
        problems = [row for row in rows if row != "ok"]
        problems += [f"foreign key violation in {row[0]} row {row[1]} -> {row[2]}" for row in keys]
        return "\n".join(problems) if problems else "ok"

    def close(self) -> None:
        """Close every pooled connection; the handle must not be used afterwards."""
        self._engine.dispose()

    def __repr__(self) -> str:
        return f"Database({_show(self._engine.url)})"

    @staticmethod
    def schema_head() -> str:
        """The newest migration this release ships (what :meth:`open` upgrades to)."""
        config = Config()
        config.set_main_option("script_location", str(_MIGRATIONS))
        head = ScriptDirectory.from_config(config).get_current_head()
        if head is None:  # pragma: no cover - the package always ships migrations
            raise StoreError("the package ships no migrations")
        return head

    def _migrate(self) -> None:
        config = Config()
        config.set_main_option("script_location", str(_MIGRATIONS))
        try:
            with self.begin() as connection:
                if self.dialect == "postgresql":
                    connection.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK}
                    )
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
        except CommandError as exc:
            raise StoreError(f"cannot migrate {_show(self._engine.url)}: {exc}") from exc
        except SQLAlchemyError as exc:
            reason = getattr(exc, "orig", None) or exc
            raise StoreError(f"cannot open {_show(self._engine.url)}: {reason}") from exc


def _sqlite_engine(url: URL) -> Engine:
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:") or "mode" in url.query:
        raise StoreError(
            f"{_show(url)}: SQLite needs a file path (sqlite:///path/to/courtyard.db); "
            "an in-memory database cannot be shared between threads"
        )
    Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        poolclass=QueuePool,
        pool_size=8,
        max_overflow=24,
        pool_timeout=60,
        connect_args={"check_same_thread": False},
    )
    event.listen(engine, "connect", _configure_sqlite)
    event.listen(engine, "begin", _begin_sqlite)
    return engine


def _configure_sqlite(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # pysqlite would otherwise emit its own deferred BEGIN; _begin_sqlite takes over
    # (the SQLAlchemy "pysqlite serializable" recipe).
    assert isinstance(dbapi_connection, sqlite3.Connection)
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        for name, value in _SQLITE_PRAGMAS:
            cursor.execute(f"PRAGMA {name}={value}")
        mode = cursor.execute("PRAGMA journal_mode").fetchone()
    finally:
        cursor.close()
    if mode is None or str(mode[0]).lower() != "wal":
        raise StoreError(f"SQLite refused write-ahead logging (journal_mode is {mode})")


def _begin_sqlite(connection: Connection) -> None:
    mode = "DEFERRED" if connection.get_execution_options().get(_READ_ONLY) else "IMMEDIATE"
    connection.exec_driver_sql(f"BEGIN {mode}")


def _postgres_engine(url: URL) -> Engine:
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    if url.drivername != "postgresql+psycopg":
        raise StoreError(f"{_show(url)}: use the psycopg driver (postgresql+psycopg://...)")
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def _show(url: URL) -> str:
    return url.render_as_string(hide_password=True)
