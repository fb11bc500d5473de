"""The audit log on every store: group commit, checkpoints on count and on time, resuming,
the signing key's life, queries, proofs and archiving."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from courtyard.audit import (
    AppendBatch,
    AuditClosed,
    AuditConfig,
    AuditEvent,
    AuditKeyError,
    AuditLog,
    AuditStore,
    AuditWriteFailed,
    EntryArchived,
    EntryNotFound,
    MemoryAuditStore,
    consistency_proof,
    verify,
    verify_consistency,
    verify_inclusion,
)
from courtyard.core import FakeClock

MakeEvent = Callable[..., AuditEvent]


class CountingStore:
    """Wraps a store and counts the transactions that wrote entries."""

    def __init__(self, inner: AuditStore) -> None:
        self.inner = inner
        self.batches: list[int] = []

    def append(self, batch: AppendBatch) -> None:
        if batch.entries:
            self.batches.append(len(batch.entries))
        self.inner.append(batch)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


class FailingStore(MemoryAuditStore):
    """A memory store whose appends fail while ``failing`` is set."""

    failing = False

    def append(self, batch: AppendBatch) -> None:
        if self.failing:
            raise OSError("disk full")
        super().append(batch)


async def test_records_are_numbered_chained_and_acknowledged(
    log: AuditLog, make_event: MakeEvent
) -> None:
    receipts = [await log.record(make_event(i)) for i in range(3)]
    assert [r.seq for r in receipts] == [1, 2, 3]
    entries = await log.query()
    assert [e.entry_hash for e in entries] == [r.entry_hash for r in receipts]
    assert entries[0].prev_hash == "00" * 32
    assert entries[1].prev_hash == entries[0].entry_hash
    assert entries[0].time_us == 1_700_000_000_000_000
    assert log.size == 3


async def test_many_concurrent_records_share_few_transactions(
    config: AuditConfig, audit_store: AuditStore, clock: FakeClock, make_event: MakeEvent
) -> None:
    counting = CountingStore(audit_store)
    log = await AuditLog.open(config, counting, clock=clock)  # type: ignore[arg-type]
    try:
        receipts = await asyncio.gather(*(log.record(make_event(i)) for i in range(300)))
    finally:
        await log.aclose()
    assert sorted(r.seq for r in receipts) == list(range(1, 301))
    assert sum(counting.batches) == 300
    assert len(counting.batches) < 300 // 10  # group commit: far fewer transactions
    assert max(counting.batches) <= config.batch_max


async def test_batches_are_capped_at_batch_max(
    tmp_path: Path, clock: FakeClock, make_event: MakeEvent
) -> None:
    counting = CountingStore(MemoryAuditStore())
    config = AuditConfig(tmp_path, batch_max=7)
    log = await AuditLog.open(config, counting, clock=clock)  # type: ignore[arg-type]
    await asyncio.gather(*(log.record(make_event(i)) for i in range(50)))
    await log.aclose()
    assert max(counting.batches) == 7 and sum(counting.batches) == 50


async def test_a_checkpoint_every_n_entries(log: AuditLog, make_event: MakeEvent) -> None:
    for i in range(25):
        await log.record(make_event(i))
    sizes = [c.tree_size for c in await log.checkpoints()]
    assert sizes == [10, 20]
    assert log.latest_checkpoint is not None and log.latest_checkpoint.tree_size == 20


async def test_a_checkpoint_after_the_interval_on_the_injected_clock(
    log: AuditLog, clock: FakeClock, make_event: MakeEvent
) -> None:
    await log.record(make_event(0))
    await log.record(make_event(1))
    await log.flush()
    assert await log.checkpoints() == []
    await clock.advance(9.9)
    await log.flush()
    assert await log.checkpoints() == []
    await clock.advance(0.1)
    await log.flush()
    [checkpoint] = await log.checkpoints()
    assert (checkpoint.tree_size, checkpoint.time_us) == (2, 1_700_000_010_000_000)
    await clock.advance(10)  # nothing new: no new checkpoint
    await log.flush()
    assert len(await log.checkpoints()) == 1


async def test_closing_signs_a_final_checkpoint_in_the_db_and_the_file(
    config: AuditConfig, audit_store: AuditStore, clock: FakeClock, make_event: MakeEvent
) -> None:
    log = await AuditLog.open(config, audit_store, clock=clock)
    for i in range(13):
        await log.record(make_event(i))
    await log.aclose()
    assert [c.tree_size for c in audit_store.checkpoints()] == [10, 13]
    lines = config.checkpoints_file.read_text().splitlines()
    assert [json.loads(line)["treeSize"] for line in lines] == [10, 13]
    with pytest.raises(AuditClosed):
        await log.record(make_event(99))
    report = verify(
        audit_store, public_key=log.public_key, checkpoints_file=config.checkpoints_file
    )
    assert report.ok and report.entries == 13 and report.checkpoints == 2, report


async def test_reopening_resumes_the_chain_and_the_tree(
    config: AuditConfig,
    audit_store: AuditStore,
    clock: FakeClock,
    make_event: MakeEvent,
    crash: Callable[[AuditLog], None],
) -> None:
    log = await AuditLog.open(config, audit_store, clock=clock)
    for i in range(12):
        await log.record(make_event(i))
    await log.flush()
    # Simulate a crash: no aclose, so entries 11 and 12 are unsigned.
    crash(log)
    again = await AuditLog.open(config, audit_store, clock=clock)
    assert again.size == 12 and again.key_id == log.key_id
    receipt = await again.record(make_event(12))
    assert receipt.seq == 13
    await again.aclose()
    report = verify(
        audit_store, public_key=again.public_key, checkpoints_file=config.checkpoints_file
    )
    assert report.ok and report.entries == 13, report


def test_the_signing_key_is_private_and_refused_when_exposed(tmp_path: Path) -> None:
    async def run() -> None:
        config = AuditConfig(tmp_path)
        log = await AuditLog.open(config, store)
        await log.aclose()
        assert stat.S_IMODE(config.key_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(config.key_file.parent.stat().st_mode) == 0o700
        os.chmod(config.key_file, 0o644)
        with pytest.raises(AuditKeyError, match="chmod 600"):
            await AuditLog.open(config, store)

    store = MemoryAuditStore()
    asyncio.run(run())


async def test_a_lost_key_is_not_silently_replaced(
    config: AuditConfig, audit_store: AuditStore, make_event: MakeEvent
) -> None:
    log = await AuditLog.open(config, audit_store)
    await log.record(make_event(0))
    await log.aclose()
    original = config.key_file.read_bytes()
    config.key_file.unlink()
    with pytest.raises(AuditKeyError, match="missing"):
        await AuditLog.open(config, audit_store)
    # Another key in its place is refused too.
    other = AuditConfig(config.data_dir.parent / "other")
    await (await AuditLog.open(other, MemoryAuditStore())).aclose()
    config.key_file.write_bytes(other.key_file.read_bytes())
    os.chmod(config.key_file, 0o600)
    with pytest.raises(AuditKeyError, match="signed by key"):
        await AuditLog.open(config, audit_store)
    config.key_file.write_bytes(original)
    await (await AuditLog.open(config, audit_store)).aclose()


async def test_a_failed_batch_acknowledges_nothing_and_the_log_carries_on(
    tmp_path: Path, make_event: MakeEvent
) -> None:
    store = FailingStore()
    log = await AuditLog.open(AuditConfig(tmp_path), store)
    await log.record(make_event(0))
    store.failing = True
    results = await asyncio.gather(
        *(log.record(make_event(i)) for i in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, AuditWriteFailed) and "disk full" in str(r) for r in results)
    store.failing = False
    receipt = await log.record(make_event(9))
    assert receipt.seq == 2  # numbering resumed where the durable trail ends
    await log.aclose()
    assert verify(store, public_key=log.public_key).ok


async def test_record_sync_from_threads(log: AuditLog, make_event: MakeEvent) -> None:
    seqs: list[int] = []

    def work(i: int) -> None:
        seqs.append(log.record_sync(make_event(i), timeout=10).seq)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        await asyncio.to_thread(thread.join)
    assert sorted(seqs) == list(range(1, 9))
    with pytest.raises(RuntimeError, match="block the event loop"):
        log.record_sync(make_event(0))


async def test_query_through_the_log(
    log: AuditLog, clock: FakeClock, make_event: MakeEvent
) -> None:
    for i in range(6):
        await log.record(make_event(i, action="app.stop" if i % 2 else "auth.login.failure"))
        await clock.advance(1)
    assert [e.seq for e in await log.query(action="app.")] == [2, 4, 6]
    assert [e.seq for e in await log.query(actor="user-1@example.com")] == [2, 5]
    assert [e.seq for e in await log.query(since=1_700_000_002.0, until=1_700_000_004.0)] == [3, 4]
    assert [e.seq for e in await log.query(after_seq=4, limit=1)] == [5]
    entry = await log.entry(3)
    assert entry.document()["time"] == "2023-11-14T22:13:22.000000Z"
    with pytest.raises(EntryNotFound):
        await log.entry(7)


async def test_inclusion_proofs_verify_against_the_signed_root(
    log: AuditLog, make_event: MakeEvent
) -> None:
    await asyncio.gather(*(log.record(make_event(i)) for i in range(37)))
    for seq in (1, 2, 10, 11, 36, 37):
        proof = await log.proof(seq)  # 37 is past the last checkpoint: one is signed for it
        assert proof.is_valid()
        assert proof.tree_size == 37
        assert verify_inclusion(
            bytes.fromhex(proof.leaf_hash),
            proof.leaf_index,
            proof.tree_size,
            [bytes.fromhex(h) for h in proof.audit_path],
            bytes.fromhex(proof.root),
        )
        assert proof.checkpoint.signature_ok(log.public_key)
    with pytest.raises(EntryNotFound):
        await log.proof(38)


async def test_checkpoints_are_consistent_with_each_other(
    log: AuditLog, make_event: MakeEvent
) -> None:
    for i in range(30):
        await log.record(make_event(i))
    entries = await log.query(limit=1000)
    leaves = [bytes.fromhex(e.leaf_hash) for e in entries]
    first, *_, last = await log.checkpoints()
    proof = consistency_proof(leaves, first.tree_size, last.tree_size)
    old, new = bytes.fromhex(first.root), bytes.fromhex(last.root)
    assert verify_consistency(first.tree_size, last.tree_size, old, new, proof)


async def test_archiving_moves_old_entries_out_and_keeps_proofs_working(
    config: AuditConfig, audit_store: AuditStore, make_event: MakeEvent
) -> None:
    config = AuditConfig(config.data_dir, checkpoint_every=100)
    log = await AuditLog.open(config, audit_store)
    try:
        for start in range(0, 700, 50):
            await asyncio.gather(*(log.record(make_event(i)) for i in range(start, start + 50)))
        assert await log.archive(before_seq=50) is None  # no checkpoint boundary below it
        segment = await log.archive(before_seq=450)
        assert segment is not None and segment.first_seq == 1
        boundary = segment.last_seq
        assert boundary < 450 and boundary in {c.tree_size for c in await log.checkpoints()}
        assert (config.archive_dir / segment.file).is_file()
        assert [e.seq for e in await log.query(limit=1)] == [boundary + 1]
        with pytest.raises(EntryArchived) as caught:
            await log.entry(1)
        assert caught.value.file == segment.file
        with pytest.raises(EntryArchived):
            await log.proof(boundary)
        for seq in (boundary + 1, boundary + 2, 512, 699, 700):
            assert (await log.proof(seq)).is_valid(), seq
        report = await log.verify()
        assert report.ok and report.entries == 700, report
        # A second archive continues where the first ended.
        again = await log.archive(before_seq=10_000)
        assert again is not None and (again.first_seq, again.last_seq) == (boundary + 1, 700)
        assert await log.query() == []
        assert (await log.record(make_event(700))).seq == 701
        assert (await log.proof(701)).is_valid()  # from the nodes the archives left behind
        assert (await log.verify()).ok
    finally:
        await log.aclose()


async def test_a_checkpoint_line_cut_short_by_a_crash_is_dropped_not_glued(
    config: AuditConfig, audit_store: AuditStore, make_event: MakeEvent
) -> None:
    log = await AuditLog.open(config, audit_store)
    for i in range(10):
        await log.record(make_event(i))
    with config.checkpoints_file.open("a") as file:
        file.write('{"type":"checkpoint","treeSize":99')  # torn: no newline
    for i in range(10, 20):
        await log.record(make_event(i))
    await log.aclose()
    lines = config.checkpoints_file.read_text().splitlines()
    assert [json.loads(line)["treeSize"] for line in lines] == [10, 20]
    report = verify(
        audit_store, public_key=log.public_key, checkpoints_file=config.checkpoints_file
    )
    assert report.ok, report
