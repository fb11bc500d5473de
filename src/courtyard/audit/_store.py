"""Where the audit trail keeps its entries: the ``AuditStore`` protocol and its memory backend.

Stores only keep and return rows; every hash is computed and checked by the log and the
verifier, so a store (or whoever edits it) cannot make a bad trail look good.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

from courtyard.audit._checkpoints import Checkpoint
from courtyard.audit._errors import AuditWriteFailed
from courtyard.audit._events import EntryRow
from courtyard.audit._merkle import Node

NodeKey = tuple[int, int]


@dataclass(frozen=True, slots=True)
class AppendBatch:
    """What one group commit writes in one transaction."""

    entries: Sequence[EntryRow]
    nodes: Sequence[Node] = ()
    checkpoint: Checkpoint | None = None


@dataclass(frozen=True, slots=True)
class StoreHead:
    """Where the trail stands: its last seq (archived or not) and its latest checkpoint."""

    last_seq: int
    archived_through: int
    checkpoint: Checkpoint | None


@dataclass(frozen=True, slots=True)
class ArchiveSegment:
    """Entries ``first_seq``..``last_seq`` moved to ``file`` (a name in the archive folder)."""

    first_seq: int
    last_seq: int
    file: str
    sha256: str
    created_us: int


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Filters of :meth:`AuditStore.query`; ``action`` ending in "." matches a prefix."""

    actor: str | None = None
    action: str | None = None
    target: str | None = None
    outcome: str | None = None
    since_us: int | None = None
    until_us: int | None = None
    after_seq: int = 0
    limit: int = 100

    def matches(self, row: EntryRow) -> bool:
        """The filter as plain code (the memory store's query, the SQL store's reference)."""
        if self.action is not None:
            if self.action.endswith("."):
                if not row.action.startswith(self.action):
                    return False
            elif row.action != self.action:
                return False
        return (
            row.seq > self.after_seq
            and (self.actor is None or row.actor_id == self.actor)
            and (self.target is None or row.target == self.target)
            and (self.outcome is None or row.outcome == self.outcome)
            and (self.since_us is None or row.time_us >= self.since_us)
            and (self.until_us is None or row.time_us < self.until_us)
        )


class AuditStore(Protocol):
    """Persistence of the trail. Every method is atomic and thread-safe, and synchronous:
    :class:`AuditLog` calls them from a worker thread."""

    def append(self, batch: AppendBatch) -> None:
        """Write the batch in one transaction, or nothing.

        Raises :class:`AuditWriteFailed` when the entries do not continue the trail (another
        writer got there first).
        """
        ...

    def head(self) -> StoreHead:
        """The last seq, how far entries are archived, and the latest checkpoint."""
        ...

    def entries(self, after_seq: int, limit: int) -> list[EntryRow]:
        """Up to ``limit`` entries with seq > ``after_seq``, in seq order."""
        ...

    def entry(self, seq: int) -> EntryRow | None:
        """Entry ``seq``, or None when missing (or archived)."""
        ...

    def query(self, query: AuditQuery) -> list[EntryRow]:
        """Entries matching ``query``, in seq order."""
        ...

    def checkpoints(self) -> list[Checkpoint]:
        """Every checkpoint, smallest tree first."""
        ...

    def leaves(self, first_seq: int, last_seq: int) -> dict[int, str]:
        """seq -> leaf hash (hex) of the stored entries in ``first_seq``..``last_seq``."""
        ...

    def nodes(self, keys: Collection[NodeKey]) -> dict[NodeKey, str]:
        """The stored subtree hashes (hex) among ``keys`` (level, index)."""
        ...

    def archives(self) -> list[ArchiveSegment]:
        """Every archived segment, oldest first."""
        ...

    def archive(self, segment: ArchiveSegment, nodes: Sequence[Node]) -> None:
        """In one transaction: record ``segment``, keep ``nodes``, delete its entries."""
        ...


class MemoryAuditStore:
    """An :class:`AuditStore` in memory, for tests and development."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: list[EntryRow] = []
        self._checkpoints: list[Checkpoint] = []
        self._nodes: dict[NodeKey, str] = {}
        self._archives: list[ArchiveSegment] = []

    def _last_seq(self) -> int:
        if self._rows:
            return self._rows[-1].seq
        return self._archives[-1].last_seq if self._archives else 0

    def append(self, batch: AppendBatch) -> None:
        with self._lock:
            expected = self._last_seq() + 1
            for offset, row in enumerate(batch.entries):
                if row.seq != expected + offset:
                    raise AuditWriteFailed(
                        f"entry {row.seq} does not continue the trail at {expected + offset} "
                        "(is another writer appending?)"
                    )
            if batch.checkpoint is not None and any(
                c.tree_size == batch.checkpoint.tree_size for c in self._checkpoints
            ):
                raise AuditWriteFailed(f"a checkpoint at {batch.checkpoint.tree_size} exists")
            self._rows.extend(batch.entries)
            for level, index, digest in batch.nodes:
                self._nodes[level, index] = digest.hex()
            if batch.checkpoint is not None:
                self._checkpoints.append(batch.checkpoint)
                self._checkpoints.sort(key=lambda c: c.tree_size)

    def head(self) -> StoreHead:
        with self._lock:
            return StoreHead(
                last_seq=self._last_seq(),
                archived_through=self._archives[-1].last_seq if self._archives else 0,
                checkpoint=self._checkpoints[-1] if self._checkpoints else None,
            )

    def entries(self, after_seq: int, limit: int) -> list[EntryRow]:
        with self._lock:
            start = bisect.bisect_right(self._rows, after_seq, key=lambda row: row.seq)
            return self._rows[start : start + limit]

    def entry(self, seq: int) -> EntryRow | None:
        with self._lock:
            index = bisect.bisect_left(self._rows, seq, key=lambda row: row.seq)
            if index < len(self._rows) and self._rows[index].seq == seq:
                return self._rows[index]
            return None

    def query(self, query: AuditQuery) -> list[EntryRow]:
        with self._lock:
            start = bisect.bisect_right(self._rows, query.after_seq, key=lambda row: row.seq)
            found: list[EntryRow] = []
            for row in self._rows[start:]:
                if len(found) >= query.limit:
                    break
                if query.matches(row):
                    found.append(row)
            return found

    def checkpoints(self) -> list[Checkpoint]:
        with self._lock:
            return list(self._checkpoints)

    def leaves(self, first_seq: int, last_seq: int) -> dict[int, str]:
        with self._lock:
            start = bisect.bisect_left(self._rows, first_seq, key=lambda row: row.seq)
            found: dict[int, str] = {}
            for row in self._rows[start:]:
                if row.seq > last_seq:
                    break
                found[row.seq] = row.leaf_hash
            return found

    def nodes(self, keys: Collection[NodeKey]) -> dict[NodeKey, str]:
        with self._lock:
            return {key: self._nodes[key] for key in keys if key in self._nodes}

    def archives(self) -> list[ArchiveSegment]:
        with self._lock:
            return list(self._archives)

    def archive(self, segment: ArchiveSegment, nodes: Sequence[Node]) -> None:
        with self._lock:
            for level, index, digest in nodes:
                self._nodes.setdefault((level, index), digest.hex())
            self._archives.append(segment)
            self._rows = [row for row in self._rows if row.seq > segment.last_seq]
