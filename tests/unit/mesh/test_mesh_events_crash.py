"""Durable before acknowledged: ``kill -9`` a process publishing events into SQLite, then check
that every event whose publish returned is stored with all its deliveries, and that no event
was stored without them (one transaction each)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from courtyard.mesh._events_sql import SqlEventStore
from courtyard.store import Database

pytestmark = pytest.mark.slow

CHILD = """
import asyncio, sys
from pathlib import Path

from courtyard.contracts import MeshPolicy, Subscription
from courtyard.mesh._events import EventBus
from courtyard.mesh._events_sql import SqlEventStore
from courtyard.store import Database

SUBSCRIBE = [Subscription(topic="notes.created", handler="/in")]
POLICIES = {
    "notes": MeshPolicy(consumes=[], accepts=None, publishes=["notes.created"], subscribes=[]),
    "search": MeshPolicy(consumes=[], accepts=None, publishes=[], subscribes=SUBSCRIBE),
    "mailer": MeshPolicy(consumes=[], accepts=None, publishes=[], subscribes=SUBSCRIBE),
}

class NeverUsed:
    async def send(self, subscriber, handler, cloudevent):
        raise AssertionError("nothing is delivered here")

async def policies():
    return POLICIES

async def main(folder: Path) -> None:
    db = Database.open(f"sqlite:///{folder / 'courtyard.db'}")
    bus = EventBus(SqlEventStore(db), policies, NeverUsed())

    async def publisher(p: int) -> None:
        i = 0
        while True:
            body = b'{"p": %d, "i": %d}' % (p, i)
            event_id = await bus.publish("notes", "notes.created", body, "application/json")
            sys.stdout.write(event_id + "\\n")
            sys.stdout.flush()
            i += 1

    await asyncio.gather(*(publisher(p) for p in range(8)))

asyncio.run(main(Path(sys.argv[1])))
"""

ACKS_BEFORE_KILL = 300


def test_published_events_survive_kill_9(tmp_path: Path) -> None:
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
    # A line cut off by the kill has no newline: that publish was never acknowledged.
    acknowledged = {line.decode().strip() for line in output if line.endswith(b"\n")}
    assert len(acknowledged) >= ACKS_BEFORE_KILL

    db = Database.open(f"sqlite:///{tmp_path / 'courtyard.db'}")
    try:
        assert db.integrity_check() == "ok"
        store = SqlEventStore(db)
        for event_id in acknowledged:
            event = store.event(event_id)
            assert event is not None, f"acknowledged event {event_id} is lost"
            deliveries = store.deliveries(event_id)
            assert [(d.subscriber, d.state) for d in deliveries] == [
                ("mailer", "pending"),
                ("search", "pending"),
            ]
        with db.read() as connection:
            stored = connection.exec_driver_sql("SELECT COUNT(*) FROM events").scalar_one()
            orphans = connection.exec_driver_sql(
                "SELECT COUNT(*) FROM events e WHERE (SELECT COUNT(*) FROM deliveries d "
                "WHERE d.event_id = e.id) != 2"
            ).scalar_one()
        assert stored >= len(acknowledged)
        assert orphans == 0  # never an event without its deliveries
        # The store still works after the crash: every delivery is due and claimable once.
        claimed = store.claim_due(time.time() + 1, 10_000, 60)
        assert len(claimed) == 2 * stored
    finally:
        db.close()
