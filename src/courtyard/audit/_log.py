"""The audit log: one writer task that numbers, chains, commits and signs every entry.

Every ``record`` waits for the transaction that holds its entry (group commit: one transaction
per batch the queue has gathered), so an acknowledged entry survives ``kill -9``.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
from collections.abc import AsyncGenerator, Iterator
from contextlib import aclosing
from datetime import datetime
from pathlib import Path
from typing import Final, NamedTuple

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from courtyard.audit._archive import archive_entries, export_lines
from courtyard.audit._canonical import entry_bytes
from courtyard.audit._checkpoints import (
    Checkpoint,
    append_checkpoint,
    read_checkpoints,
    sign_checkpoint,
)
from courtyard.audit._config import AuditConfig
from courtyard.audit._errors import (
    AuditClosed,
    AuditKeyError,
    AuditWriteFailed,
    EntryArchived,
    EntryNotFound,
    ProofUnavailable,
    TrailDamaged,
    TrailRolledBack,
)
from courtyard.audit._events import AuditEntry, AuditEvent, AuditReceipt, EntryRow
from courtyard.audit._keys import SigningKey, load_signing_key, public_key_pem
from courtyard.audit._merkle import CompactRange, Node, leaf_hash
from courtyard.audit._proofs import NODE_LEVEL, InclusionProof, build_inclusion_proof
from courtyard.audit._store import AppendBatch, ArchiveSegment, AuditQuery, AuditStore
from courtyard.audit._verify import GENESIS, VerifyReport, page_rows, verify
from courtyard.core import Clock, SystemClock

logger = logging.getLogger("courtyard.audit")

_MAX_QUERY = 1000


class _Entry(NamedTuple):
    event: AuditEvent
    time_us: int
    future: asyncio.Future[AuditReceipt]


class _Sign(NamedTuple):
    future: asyncio.Future[Checkpoint | None]


class _Flush(NamedTuple):
    future: asyncio.Future[None]


_TICK: Final = "tick"
_STOP: Final = "stop"
_Item = _Entry | _Sign | _Flush | str


class _State:
    """What the writer knows of the trail: its size, last hash, frontier, last checkpoint."""

    def __init__(self, frontier: CompactRange, last: bytes, latest: Checkpoint | None) -> None:
        self.frontier = frontier
        self.last = last
        self.latest = latest


def _resume(store: AuditStore, key: SigningKey) -> _State:
    """Rebuild the writer's state: the latest checkpoint, then the unsigned tail, rechecked."""
    head = store.head()
    checkpoint = head.checkpoint
    if checkpoint is None:
        if head.archived_through:
            raise TrailDamaged(1, "entries are archived but no checkpoint is left")
        frontier, last = CompactRange(), GENESIS
    else:
        frontier = CompactRange(
            checkpoint.tree_size, [bytes.fromhex(h) for h in checkpoint.frontier]
        )
        if frontier.root().hex() != checkpoint.root:
            raise TrailDamaged(checkpoint.tree_size, "the stored frontier does not match its root")
        if not checkpoint.signature_ok(key.public_key):
            raise TrailDamaged(checkpoint.tree_size, "the latest checkpoint is not signed by us")
        last = bytes.fromhex(checkpoint.entry_hash)
    for row in page_rows(store.entries, frontier.size):
        seq = frontier.size + 1
        data = entry_bytes(*row[:12])
        digest = hashlib.sha256(last + data).digest()
        if row.seq != seq or row.prev_hash != last.hex() or row.entry_hash != digest.hex():
            raise TrailDamaged(seq, "an entry after the latest checkpoint does not chain up")
        frontier.append(leaf_hash(data))
        last = digest
    if frontier.size != head.last_seq:
        raise TrailDamaged(frontier.size + 1, f"the trail ends at {head.last_seq}")
    return _State(frontier, last, checkpoint)


class AuditLog:
    """The append-only, tamper-evident audit trail.

    Open with :meth:`open`, end with :meth:`aclose`.
    """

    def __init__(
        self, config: AuditConfig, store: AuditStore, clock: Clock, key: SigningKey, state: _State
    ) -> None:
        self._config = config
        self._store = store
        self._clock = clock
        self._key = key
        self._state = state
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=config.batch_max * 64)
        self._closed = False
        self._loop = asyncio.get_running_loop()
        self._lock = asyncio.Lock()  # archive, export and verify must not overlap
        self._writer = asyncio.create_task(self._write_loop(), name="audit-writer")
        self._ticker = asyncio.create_task(self._tick_loop(), name="audit-ticker")

    @classmethod
    async def open(
        cls, config: AuditConfig, store: AuditStore, *, clock: Clock | None = None
    ) -> AuditLog:
        """Load (or create) the signing key, resume the trail and start the writer.

        Raises :class:`AuditKeyError`, :class:`TrailRolledBack` or :class:`TrailDamaged`
        rather than sign on from a trail that does not add up.
        """

        def prepare() -> tuple[SigningKey, _State]:
            head = store.head()
            key = load_signing_key(config.key_file, create=head.checkpoint is None)
            if head.checkpoint is not None and head.checkpoint.key_id != key.key_id:
                raise AuditKeyError(
                    f"the trail was signed by key {head.checkpoint.key_id[:16]}…, but "
                    f"{config.key_file} holds key {key.key_id[:16]}…"
                )
            external, _ = read_checkpoints(config.checkpoints_file)
            outside = max((c.tree_size for c in external), default=0)
            if outside > head.last_seq:
                raise TrailRolledBack(outside, head.last_seq)
            return key, _resume(store, key)

        key, state = await asyncio.to_thread(prepare)
        return cls(config, store, clock or SystemClock(), key, state)

    # -- writing -----------------------------------------------------------------------------

    async def record(self, event: AuditEvent) -> AuditReceipt:
        """Append ``event``; returns once its entry is committed (durable)."""
        if self._closed:
            raise AuditClosed()
        time_us = round(self._clock.time() * 1_000_000)
        future: asyncio.Future[AuditReceipt] = self._loop.create_future()
        entry = _Entry(event, time_us, future)
        try:
            self._queue.put_nowait(entry)
        except asyncio.QueueFull:  # back-pressure: wait for the writer to catch up
            await self._queue.put(entry)
        return await future

    def record_sync(self, event: AuditEvent, timeout: float | None = None) -> AuditReceipt:
        """:meth:`record` from a thread that is not the log's event loop."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            raise RuntimeError("record_sync() would block the event loop; await record()")
        return asyncio.run_coroutine_threadsafe(self.record(event), self._loop).result(timeout)

    async def flush(self) -> None:
        """Wait until everything queued before this call is committed (or has failed)."""
        future: asyncio.Future[None] = self._loop.create_future()
        await self._queue.put(_Flush(future))
        await future

    async def checkpoint(self) -> Checkpoint | None:
        """Sign a checkpoint now if entries are unsigned; the latest checkpoint either way."""
        if self._closed:
            return self._state.latest
        future: asyncio.Future[Checkpoint | None] = self._loop.create_future()
        await self._queue.put(_Sign(future))
        return await future

    async def aclose(self) -> None:
        """Commit what is queued, sign a final checkpoint and stop the writer."""
        if self._closed:
            return
        self._closed = True
        self._ticker.cancel()
        await asyncio.gather(self._ticker, return_exceptions=True)
        await self._queue.put(_STOP)
        await self._writer
        while not self._queue.empty():  # items that lost the race with the stop
            left = self._queue.get_nowait()
            if isinstance(left, _Entry | _Sign | _Flush) and not left.future.done():
                left.future.set_exception(AuditClosed())

    async def _tick_loop(self) -> None:
        while True:
            await self._clock.sleep(self._config.checkpoint_interval)
            await self._queue.put(_TICK)

    async def _write_loop(self) -> None:
        stopping = False
        while not stopping:
            items: list[_Item] = [await self._queue.get()]
            count = int(isinstance(items[0], _Entry))
            while count < self._config.batch_max and not self._queue.empty():
                item = self._queue.get_nowait()
                items.append(item)
                count += isinstance(item, _Entry)
            stopping = _STOP in items
            await self._handle(items, sign=stopping or _TICK in items)

    async def _handle(self, items: list[_Item], *, sign: bool) -> None:
        entries = [item for item in items if isinstance(item, _Entry)]
        signers = [item for item in items if isinstance(item, _Sign)]
        work = [(entry.event, entry.time_us) for entry in entries]
        try:
            receipts = await asyncio.to_thread(self._commit, work, sign or bool(signers))
        except Exception as exc:
            error = exc if isinstance(exc, AuditWriteFailed) else AuditWriteFailed(_reason(exc))
            logger.error("audit batch of %d entries failed: %s", len(entries), error)
            waiting: list[asyncio.Future[AuditReceipt] | asyncio.Future[Checkpoint | None]]
            waiting = [entry.future for entry in entries] + [signer.future for signer in signers]
            for future in waiting:
                if not future.done():
                    future.set_exception(error)
            receipts = None
        if receipts is not None:
            for entry, receipt in zip(entries, receipts, strict=True):
                if not entry.future.done():
                    entry.future.set_result(receipt)
            for signer in signers:
                if not signer.future.done():
                    signer.future.set_result(self._state.latest)
        for flush in items:
            if isinstance(flush, _Flush) and not flush.future.done():
                flush.future.set_result(None)

    def _commit(self, work: list[tuple[AuditEvent, int]], sign: bool) -> list[AuditReceipt]:
        """Number, hash and write one batch (worker thread); state changes only on success."""
        state = self._state
        frontier = state.frontier.copy()
        last = state.last
        rows: list[EntryRow] = []
        nodes: list[Node] = []
        sha256 = hashlib.sha256
        last_hex = last.hex()
        for event, time_us in work:
            actor = event.actor
            fields = (
                frontier.size + 1,
                time_us,
                actor.kind,
                actor.id,
                actor.auth,
                event.action,
                event.target,
                event.outcome,
                event.reason,
                event.request_id,
                event.trace_id,
                event.details_json,
            )
            data = entry_bytes(*fields)
            digest = sha256(last + data).digest()
            leaf = sha256(b"\x00" + data).digest()
            frontier.append_collecting(leaf, NODE_LEVEL, nodes)
            digest_hex = digest.hex()
            rows.append(EntryRow(*fields, last_hex, digest_hex, leaf.hex()))
            last, last_hex = digest, digest_hex
        signed_size = state.latest.tree_size if state.latest else 0
        unsigned = frontier.size - signed_size
        checkpoint = None
        if unsigned and (sign or unsigned >= self._config.checkpoint_every):
            now = round(self._clock.time() * 1_000_000)
            checkpoint = sign_checkpoint(self._key, frontier, last, now)
        if rows or checkpoint:
            self._store.append(AppendBatch(rows, nodes, checkpoint))
        state.frontier, state.last = frontier, last
        if checkpoint is not None:
            state.latest = checkpoint
            try:
                # After the commit: the file may lag the database, never lead it.
                append_checkpoint(self._config.checkpoints_file, checkpoint)
            except OSError as exc:
                logger.error("cannot append to %s: %s", self._config.checkpoints_file, exc)
        return [AuditReceipt(row.seq, row.entry_hash) for row in rows]

    # -- reading -----------------------------------------------------------------------------

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._key.public_key

    @property
    def public_key_pem(self) -> str:
        return public_key_pem(self._key.public_key)

    @property
    def key_id(self) -> str:
        return self._key.key_id

    @property
    def size(self) -> int:
        """How many entries the trail holds (committed)."""
        return self._state.frontier.size

    @property
    def latest_checkpoint(self) -> Checkpoint | None:
        return self._state.latest

    @property
    def config(self) -> AuditConfig:
        return self._config

    async def query(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        outcome: str | None = None,
        since: datetime | float | None = None,
        until: datetime | float | None = None,
        after_seq: int = 0,
        limit: int = 100,
    ) -> list[AuditEntry]:
        """Entries in seq order matching every filter given; ``action="app."`` is a prefix.

        ``since``/``until`` are datetimes or seconds since the epoch (``until`` exclusive).
        """
        query = AuditQuery(
            actor=actor,
            action=action,
            target=target,
            outcome=outcome,
            since_us=_micros(since),
            until_us=_micros(until),
            after_seq=max(0, after_seq),
            limit=max(1, min(limit, _MAX_QUERY)),
        )
        rows = await asyncio.to_thread(self._store.query, query)
        return [AuditEntry.from_row(row) for row in rows]

    async def entry(self, seq: int) -> AuditEntry:
        """Entry ``seq``; raises :class:`EntryNotFound` or :class:`EntryArchived`."""
        row = await asyncio.to_thread(self._store.entry, seq)
        if row is None:
            raise await self._absent(seq)
        return AuditEntry.from_row(row)

    async def _absent(self, seq: int) -> EntryNotFound | EntryArchived:
        for segment in await asyncio.to_thread(self._store.archives):
            if segment.first_seq <= seq <= segment.last_seq:
                return EntryArchived(seq, segment.file)
        return EntryNotFound(seq)

    async def proof(self, seq: int) -> InclusionProof:
        """Inclusion proof of entry ``seq`` against the latest checkpoint."""
        if not 1 <= seq <= self.size:
            raise EntryNotFound(seq)
        latest = self._state.latest
        if latest is None or seq > latest.tree_size:
            latest = await self.checkpoint()  # sign the unsigned tail rather than make them wait
        if latest is None or seq > latest.tree_size:
            raise ProofUnavailable(seq, "no signed checkpoint covers it yet")
        head = await asyncio.to_thread(self._store.head)
        if seq <= head.archived_through:
            raise await self._absent(seq)
        return await asyncio.to_thread(
            build_inclusion_proof, self._store, seq, latest, head.archived_through
        )

    async def checkpoints(self) -> list[Checkpoint]:
        return await asyncio.to_thread(self._store.checkpoints)

    async def verify(self) -> VerifyReport:
        """Verify this trail: store, archives and the checkpoints file, with this log's key."""
        async with self._lock:
            return await asyncio.to_thread(
                verify,
                self._store,
                public_key=self._key.public_key,
                checkpoints_file=self._config.checkpoints_file,
                archive_dir=self._config.archive_dir,
            )

    async def archive(self, before_seq: int) -> ArchiveSegment | None:
        """Move entries below ``before_seq``, up to the nearest checkpoint, to an archive file.

        Entries leave the database only once their gzip segment is fsynced; None when
        nothing is old enough.
        """
        async with self._lock:
            now = round(self._clock.time() * 1_000_000)
            return await asyncio.to_thread(
                archive_entries, self._store, self._config.archive_dir, before_seq, now
            )

    async def export_lines(self) -> AsyncGenerator[str, None]:
        """The trail as JSON Lines (no newlines), after signing whatever is unsigned."""
        checkpoint = await self.checkpoint()
        size = checkpoint.tree_size if checkpoint else 0
        now = round(self._clock.time() * 1_000_000)
        async with self._lock:
            lines = export_lines(
                self._store, self._config.archive_dir, self._key.public_key, size, now
            )
            while True:
                chunk = await asyncio.to_thread(_take, lines, 2000)
                if not chunk:
                    return
                for line in chunk:
                    yield line

    async def export(self, path: Path) -> int:
        """Write :meth:`export_lines` to ``path``; returns how many lines it wrote."""
        count = 0
        with path.open("w", encoding="utf-8") as file:
            async with aclosing(self.export_lines()) as lines:
                async for line in lines:
                    file.write(line + "\n")
                    count += 1
        return count


def _take(lines: Iterator[str], count: int) -> list[str]:
    return list(itertools.islice(lines, count))


def _micros(moment: datetime | float | None) -> int | None:
    if moment is None:
        return None
    seconds = moment.timestamp() if isinstance(moment, datetime) else float(moment)
    return round(seconds * 1_000_000)


def _reason(exc: BaseException) -> str:
    original = getattr(exc, "orig", None)
    return str(original or exc) or type(exc).__name__
