"""The audit trail in the platform database (SQLite or PostgreSQL).

The tables belong to ``courtyard.store``'s schema and migrations; audit sits beside store in
the layer map and may not import it, so this module describes the same columns with its own
lightweight ``Table`` objects (a test keeps the two in step) and takes the database handle
through a small protocol the platform's ``Database`` satisfies.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    func,
    insert,
    select,
    tuple_,
)
from sqlalchemy.engine import Connection

from courtyard.audit._checkpoints import Checkpoint
from courtyard.audit._errors import AuditWriteFailed
from courtyard.audit._events import EntryRow
from courtyard.audit._merkle import Node
from courtyard.audit._store import AppendBatch, ArchiveSegment, AuditQuery, NodeKey, StoreHead


class SqlDatabase(Protocol):
    """What the SQL store needs of a database handle (``courtyard.store.Database`` fits)."""

    @property
    def dialect(self) -> str: ...

    def begin(self) -> AbstractContextManager[Connection]:
        """A write transaction (on SQLite: BEGIN IMMEDIATE)."""
        ...

    def read(self) -> AbstractContextManager[Connection]:
        """A read-only snapshot that does not block writers."""
        ...


_metadata = MetaData()

entries = Table(
    "audit_entries",
    _metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("time_us", BigInteger),
    Column("actor_kind", String(16)),
    Column("actor_id", String(255)),
    Column("actor_auth", String(64)),
    Column("action", String(128)),
    Column("target", String(1024)),
    Column("outcome", String(16)),
    Column("reason", String(1024)),
    Column("request_id", String(128)),
    Column("trace_id", String(128)),
    Column("details", Text),
    Column("prev_hash", String(64)),
    Column("entry_hash", String(64)),
    Column("leaf_hash", String(64)),
)
checkpoints = Table(
    "audit_checkpoints",
    _metadata,
    Column("tree_size", BigInteger, primary_key=True, autoincrement=False),
    Column("time_us", BigInteger),
    Column("root", String(64)),
    Column("entry_hash", String(64)),
    Column("key_id", String(64)),
    Column("signature", String(128)),
    Column("frontier", Text),
)
nodes = Table(
    "audit_nodes",
    _metadata,
    Column("level", Integer, primary_key=True),
    Column("idx", BigInteger, primary_key=True),
    Column("hash", String(64)),
)
archives = Table(
    "audit_archives",
    _metadata,
    Column("first_seq", BigInteger, primary_key=True, autoincrement=False),
    Column("last_seq", BigInteger),
    Column("file", String(255)),
    Column("sha256", String(64)),
    Column("created_us", BigInteger),
)

_ENTRY_COLUMNS = [entries.c[name] for name in EntryRow._fields]


def _checkpoint(row: Any) -> Checkpoint:
    return Checkpoint(
        tree_size=row.tree_size,
        time_us=row.time_us,
        root=row.root,
        entry_hash=row.entry_hash,
        key_id=row.key_id,
        signature=row.signature,
        frontier=tuple(json.loads(row.frontier)),
    )


class SqlAuditStore:
    """An :class:`AuditStore` on the platform database; pass ``courtyard.store.Database``."""

    def __init__(self, database: SqlDatabase) -> None:
        self._db = database
        self._insert: str | None = None

    def append(self, batch: AppendBatch) -> None:
        with self._db.begin() as connection:
            if batch.entries:
                # Inside the write transaction: a second writer is caught here, not forked.
                expected = self._last_seq(connection) + 1
                if batch.entries[0].seq != expected:
                    raise AuditWriteFailed(
                        f"entry {batch.entries[0].seq} does not continue the trail at "
                        f"{expected} (is another writer appending?)"
                    )
                # Plain tuples through the driver's executemany: the hot path of group commit.
                connection.exec_driver_sql(self._insert_sql(connection), list(batch.entries))
            if batch.nodes:
                connection.execute(
                    insert(nodes),
                    [{"level": lv, "idx": ix, "hash": h.hex()} for lv, ix, h in batch.nodes],
                )
            if batch.checkpoint is not None:
                connection.execute(insert(checkpoints).values(_checkpoint_row(batch.checkpoint)))

    def head(self) -> StoreHead:
        with self._db.read() as connection:
            latest = connection.execute(
                select(checkpoints).order_by(checkpoints.c.tree_size.desc()).limit(1)
            ).first()
            return StoreHead(
                last_seq=self._last_seq(connection),
                archived_through=self._archived_through(connection),
                checkpoint=_checkpoint(latest) if latest is not None else None,
            )

    def entries(self, after_seq: int, limit: int) -> list[EntryRow]:
        query = (
            select(*_ENTRY_COLUMNS)
            .where(entries.c.seq > after_seq)
            .order_by(entries.c.seq)
            .limit(limit)
        )
        with self._db.read() as connection:
            return [EntryRow._make(row) for row in connection.execute(query)]

    def entry(self, seq: int) -> EntryRow | None:
        with self._db.read() as connection:
            row = connection.execute(select(*_ENTRY_COLUMNS).where(entries.c.seq == seq)).first()
        return EntryRow._make(row) if row is not None else None

    def query(self, query: AuditQuery) -> list[EntryRow]:
        statement = select(*_ENTRY_COLUMNS).where(entries.c.seq > query.after_seq)
        if query.actor is not None:
            statement = statement.where(entries.c.actor_id == query.actor)
        if query.action is not None:
            if query.action.endswith("."):
                statement = statement.where(
                    entries.c.action.startswith(query.action, autoescape=True)
                )
            else:
                statement = statement.where(entries.c.action == query.action)
        if query.target is not None:
            statement = statement.where(entries.c.target == query.target)
        if query.outcome is not None:
            statement = statement.where(entries.c.outcome == query.outcome)
        if query.since_us is not None:
            statement = statement.where(entries.c.time_us >= query.since_us)
        if query.until_us is not None:
            statement = statement.where(entries.c.time_us < query.until_us)
        statement = statement.order_by(entries.c.seq).limit(query.limit)
        with self._db.read() as connection:
            return [EntryRow._make(row) for row in connection.execute(statement)]

    def checkpoints(self) -> list[Checkpoint]:
        with self._db.read() as connection:
            rows = connection.execute(select(checkpoints).order_by(checkpoints.c.tree_size))
            return [_checkpoint(row) for row in rows]

    def leaves(self, first_seq: int, last_seq: int) -> dict[int, str]:
        query = select(entries.c.seq, entries.c.leaf_hash).where(
            entries.c.seq.between(first_seq, last_seq)
        )
        with self._db.read() as connection:
            return {seq: leaf for seq, leaf in connection.execute(query)}

    def nodes(self, keys: Collection[NodeKey]) -> dict[NodeKey, str]:
        if not keys:
            return {}
        with self._db.read() as connection:
            return self._nodes(connection, keys)

    def archives(self) -> list[ArchiveSegment]:
        with self._db.read() as connection:
            rows = connection.execute(select(archives).order_by(archives.c.first_seq))
            return [
                ArchiveSegment(r.first_seq, r.last_seq, r.file, r.sha256, r.created_us)
                for r in rows
            ]

    def archive(self, segment: ArchiveSegment, nodes_kept: Sequence[Node]) -> None:
        with self._db.begin() as connection:
            present = self._nodes(connection, [(lv, ix) for lv, ix, _ in nodes_kept])
            missing = [
                {"level": lv, "idx": ix, "hash": h.hex()}
                for lv, ix, h in nodes_kept
                if (lv, ix) not in present
            ]
            if missing:
                connection.execute(insert(nodes), missing)
            connection.execute(
                insert(archives).values(
                    first_seq=segment.first_seq,
                    last_seq=segment.last_seq,
                    file=segment.file,
                    sha256=segment.sha256,
                    created_us=segment.created_us,
                )
            )
            connection.execute(delete(entries).where(entries.c.seq <= segment.last_seq))

    def _insert_sql(self, connection: Connection) -> str:
        if self._insert is None:
            mark = "?" if connection.dialect.paramstyle == "qmark" else "%s"
            # Built from constant column names only, never from data.
            columns = ", ".join(EntryRow._fields)
            marks = ", ".join([mark] * len(EntryRow._fields))
            self._insert = f"INSERT INTO audit_entries ({columns}) VALUES ({marks})"  # noqa: S608
        return self._insert

    @staticmethod
    def _nodes(connection: Connection, keys: Collection[NodeKey]) -> dict[NodeKey, str]:
        if not keys:
            return {}
        query = select(nodes.c.level, nodes.c.idx, nodes.c.hash).where(
            tuple_(nodes.c.level, nodes.c.idx).in_(list(keys))
        )
        return {(level, idx): digest for level, idx, digest in connection.execute(query)}

    @staticmethod
    def _archived_through(connection: Connection) -> int:
        last = connection.execute(select(func.max(archives.c.last_seq))).scalar()
        return int(last) if last is not None else 0

    def _last_seq(self, connection: Connection) -> int:
        # Once per group commit: the plain statement skips SQLAlchemy's compile and cache.
        last = connection.exec_driver_sql("SELECT max(seq) FROM audit_entries").scalar()
        return int(last) if last is not None else self._archived_through(connection)


def _checkpoint_row(checkpoint: Checkpoint) -> dict[str, Any]:
    return {
        "tree_size": checkpoint.tree_size,
        "time_us": checkpoint.time_us,
        "root": checkpoint.root,
        "entry_hash": checkpoint.entry_hash,
        "key_id": checkpoint.key_id,
        "signature": checkpoint.signature,
        "frontier": json.dumps(list(checkpoint.frontier)),
    }
