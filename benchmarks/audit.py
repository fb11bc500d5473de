"""Audit trail benchmark: append throughput with group commit against one transaction per
entry (the baseline, measured in the same run), and the time to verify a million entries.

- ``group commit``: an AuditLog on a SQLite file (WAL, synchronous=FULL, as the node opens
  it), 64 coroutines each awaiting ``record`` in a loop, batches of up to 512 entries;
- ``one transaction per entry``: the same log and writers with ``batch_max=1``, so every
  entry pays its own commit (fsync);
- ``verify 1M``: a million entries with a signed checkpoint every 1,000, written by direct
  batch inserts computed in process, then ``verify`` over the store and the checkpoints
  file (hash chain, every Merkle root, every signature).

Results go to stdout and benchmarks/results/audit.json.

Usage: .venv/bin/python benchmarks/audit.py [--entries 1000000] [--appends 40000]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from courtyard.audit import (
    Actor,
    AppendBatch,
    AuditConfig,
    AuditEvent,
    AuditLog,
    AuditQuery,
    CompactRange,
    EntryRow,
    SqlAuditStore,
    verify,
)
from courtyard.audit._canonical import entry_bytes
from courtyard.audit._checkpoints import append_checkpoint, sign_checkpoint
from courtyard.audit._keys import load_signing_key
from courtyard.audit._proofs import NODE_LEVEL
from courtyard.audit._verify import GENESIS
from courtyard.store import Database

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "audit.json"
WRITERS = 64


def event(i: int) -> AuditEvent:
    return AuditEvent(
        actor=Actor("user", f"user-{i % 97}@example.com", "password"),
        action="app.deploy",
        target=f"app-{i % 31}",
        outcome="success",
        reason="rule:deployers",
        request_id=f"req-{i:08d}",
        details={"revision": i % 1000, "stage": "production", "token": "never stored"},
    )


async def appends(folder: Path, total: int, batch_max: int) -> tuple[float, int]:
    """Entries per second with WRITERS concurrent writers; also the number of entries."""
    db = Database.open(f"sqlite:///{folder / 'courtyard.db'}")
    log = await AuditLog.open(AuditConfig(folder, batch_max=batch_max), SqlAuditStore(db))
    per_writer = total // WRITERS
    events = [event(i) for i in range(per_writer * WRITERS)]

    async def writer(w: int) -> None:
        for i in range(per_writer):
            await log.record(events[w * per_writer + i])

    start = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(WRITERS)))
    elapsed = time.perf_counter() - start
    await log.aclose()
    report = verify(SqlAuditStore(db), public_key=log.public_key)
    db.close()
    assert report.ok, report
    return per_writer * WRITERS / elapsed, per_writer * WRITERS


def generate(folder: Path, count: int, every: int = 1000, batch: int = 20_000) -> Path:
    """Write ``count`` entries and a checkpoint every ``every``; returns the checkpoints file."""
    db = Database.open(f"sqlite:///{folder / 'courtyard.db'}")
    store = SqlAuditStore(db)
    key = load_signing_key(folder / "keys" / "audit-ed25519.pem", create=True)
    checkpoints_file = folder / "audit" / "checkpoints.jsonl"
    frontier = CompactRange()
    last = GENESIS
    sha256 = hashlib.sha256
    details = json.dumps({"revision": 7, "stage": "production"}, separators=(",", ":"))
    time_us = 1_700_000_000_000_000
    seq = 0
    while seq < count:
        rows: list[EntryRow] = []
        nodes: list[tuple[int, int, bytes]] = []
        checkpoints = []
        for _ in range(min(batch, count - seq)):
            seq += 1
            time_us += 1000
            fields = (
                seq,
                time_us,
                "user",
                f"user-{seq % 97}@example.com",
                "password",
                "app.deploy",
                f"app-{seq % 31}",
                "success",
                "rule:deployers",
                f"req-{seq:08d}",
                None,
                details,
            )
            data = entry_bytes(*fields)
            digest = sha256(last + data).digest()
            leaf = sha256(b"\x00" + data).digest()
            frontier.append_collecting(leaf, NODE_LEVEL, nodes)
            rows.append(EntryRow(*fields, last.hex(), digest.hex(), leaf.hex()))
            last = digest
            if seq % every == 0:
                checkpoints.append(sign_checkpoint(key, frontier, last, time_us))
        # The entries in one transaction, then their checkpoints (the store takes one each).
        store.append(AppendBatch(rows, nodes, None))
        for checkpoint in checkpoints:
            store.append(AppendBatch([], (), checkpoint))
            append_checkpoint(checkpoints_file, checkpoint)
    db.close()
    return checkpoints_file


def timed_verify(folder: Path, checkpoints_file: Path) -> tuple[float, int, int, float]:
    """Seconds to verify, entries, checkpoints, and seconds for a worst-case actor query."""
    db = Database.open(f"sqlite:///{folder / 'courtyard.db'}")
    key = load_signing_key(folder / "keys" / "audit-ed25519.pem", create=False)
    store = SqlAuditStore(db)
    start = time.perf_counter()
    report = verify(store, public_key=key.public_key, checkpoints_file=checkpoints_file)
    elapsed = time.perf_counter() - start
    start = time.perf_counter()
    assert store.query(AuditQuery(actor="nobody@example.com")) == []  # reads every entry
    scan = time.perf_counter() - start
    db.close()
    assert report.ok, report
    return elapsed, report.entries, report.checkpoints, scan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000, help="entries to verify")
    parser.add_argument("--appends", type=int, default=40_000, help="group-commit appends")
    parser.add_argument("--baseline", type=int, default=4_000, help="unbatched appends")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="courtyard-audit-bench-") as tmp:
        root = Path(tmp)
        for name in ("grouped", "single", "verify"):
            (root / name).mkdir()
        grouped, grouped_n = asyncio.run(appends(root / "grouped", args.appends, 512))
        single, single_n = asyncio.run(appends(root / "single", args.baseline, 1))
        start = time.perf_counter()
        checkpoints_file = generate(root / "verify", args.entries)
        generated = time.perf_counter() - start
        verify_s, verified, signed, scan_s = timed_verify(root / "verify", checkpoints_file)
        db_bytes = (root / "verify" / "courtyard.db").stat().st_size
    results = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "append": {
            "writers": WRITERS,
            "group_commit_entries_per_s": round(grouped),
            "group_commit_entries": grouped_n,
            "one_tx_per_entry_entries_per_s": round(single),
            "one_tx_per_entry_entries": single_n,
            "ratio": round(grouped / single, 1),
            "target_entries_per_s": 20_000,
        },
        "verify": {
            "entries": verified,
            "checkpoints": signed,
            "seconds": round(verify_s, 2),
            "entries_per_s": round(verified / verify_s),
            "generate_seconds": round(generated, 1),
            "database_mib": round(db_bytes / 2**20, 1),
            "target_seconds": 30,
            "actor_query_full_scan_seconds": round(scan_s, 2),
        },
    }
    rows = [
        ("append, group commit (64 writers)", f"{grouped:,.0f} entries/s", "≥ 20,000/s"),
        ("append, one transaction per entry", f"{single:,.0f} entries/s", "baseline"),
        ("group commit / baseline", f"{grouped / single:.1f}x", ""),
        (f"verify {verified:,} entries", f"{verify_s:.1f} s", "< 30 s"),
        ("  of which signed checkpoints", f"{signed:,}", ""),
        (f"query by actor, no match in {verified:,}", f"{scan_s:.2f} s", "(full scan)"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'result':>20}  target")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:>20}  {target}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
