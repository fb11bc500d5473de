"""Durable before acknowledged: ``kill -9`` a real process appending from 50 writers, then
check that every entry it acknowledged is there and the trail still verifies."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from courtyard.audit import Actor, AuditConfig, AuditEvent, AuditLog, SqlAuditStore, verify
from courtyard.store import Database

CHILD = """
import asyncio, sys
from pathlib import Path
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from courtyard.audit import Actor, AuditConfig, AuditEvent, AuditLog, SqlAuditStore
from courtyard.store import Database

async def main(folder: Path) -> None:
    db = Database.open(f"sqlite:///{folder / 'courtyard.db'}")
    log = await AuditLog.open(AuditConfig(folder, checkpoint_every=100), SqlAuditStore(db))

    async def writer(w: int) -> None:
        i = 0
        while True:
            event = AuditEvent(Actor("service", f"writer-{w}"), "load.append", f"t-{i}",
                               "success", details={"w": w, "i": i})
            receipt = await log.record(event)
            sys.stdout.write(f"{receipt.seq}\\n")
            sys.stdout.flush()
            i += 1

    await asyncio.gather(*(writer(w) for w in range(50)))

asyncio.run(main(Path(sys.argv[1])))
"""

ACKS_BEFORE_KILL = 1500


def test_acknowledged_entries_survive_kill_9(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdout is not None and child.stderr is not None
    output: list[bytes] = []
    stdout = child.stdout
    reader = threading.Thread(target=lambda: output.extend(iter(stdout.readline, b"")))
    reader.start()
    deadline = time.monotonic() + 60
    while len(output) < ACKS_BEFORE_KILL and child.poll() is None:
        assert time.monotonic() < deadline, "the child acknowledged too little in 60 s"
        time.sleep(0.01)
    assert child.poll() is None, child.stderr.read().decode()
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    reader.join()
    child.stdout.close()
    child.stderr.close()
    # A line cut off by the kill has no newline and was never fully acknowledged.
    acknowledged = {int(line) for line in output if line.endswith(b"\n")}
    assert len(acknowledged) >= ACKS_BEFORE_KILL

    db = Database.open(f"sqlite:///{tmp_path / 'courtyard.db'}")
    try:
        store = SqlAuditStore(db)
        config = AuditConfig(tmp_path, checkpoint_every=100)
        public_key = _public_key(config, store)
        report = verify(store, public_key=public_key, checkpoints_file=config.checkpoints_file)
        assert report.ok, report
        assert max(acknowledged) <= report.entries
        present = {row.seq for row in store.entries(0, report.entries + 1)}
        assert acknowledged <= present
        assert present == set(range(1, report.entries + 1))  # no gap, no half-written entry
    finally:
        db.close()


def _public_key(config: AuditConfig, store: SqlAuditStore) -> Ed25519PublicKey:
    """Reopen the log (it must resume cleanly after the kill) and append once more."""

    async def reopen() -> Ed25519PublicKey:
        log = await AuditLog.open(config, store)
        before = log.size
        receipt = await log.record(
            AuditEvent(Actor("system", "test"), "load.check", "t", "success")
        )
        assert receipt.seq == before + 1
        await log.aclose()
        return log.public_key

    return asyncio.run(reopen())
