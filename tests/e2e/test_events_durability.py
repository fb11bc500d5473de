"""Durable events under failure (issue 5, "Acceptance"): 10,000 events published while the node
is SIGKILLed once and a subscriber crashes at random; after recovery every event whose publish
was acknowledged (202) has reached every authorized subscriber at least once, checked by id,
and none reached an app that does not subscribe; an always-failing subscriber's events end
dead-lettered, and a redrive delivers them once it is mended.

At-least-once means a delivery is marked delivered only after the subscriber's 2xx, so a crash
between receiving and answering, or a node killed mid-send, yields a resend (a duplicate),
never a loss. Subscribers record the ids they took in a file, fsync(2) per id, so the record
survives their own crash. Ids are CloudEvents 1.0 ``id`` attributes (§3.1.1).

Marked ``integration`` as well as ``slow``: it takes a few minutes, so `make test` leaves it to
``scripts/test --integration``.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from harness import NodeProcess, wait_for

from interop.sso_testkit import check, create_user, running_node

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EVENTS = 10_000  # published to orders.created, which two apps subscribe to
KILL_AFTER = 4_000  # acknowledged publishes before the node is SIGKILLed
ALERTS = 200  # published to alerts.raised, whose only subscriber always fails
CONCURRENCY = 8  # publishes under way at once
CRASH_ONE_IN = 1_000  # the crashing subscriber dies on about one delivery in this many ...
CRASH_AT_MOST = 3  # ... this many times at most (5 in a minute would be a crash loop)
DELIVERY_TIMEOUT = 240.0  # seconds for every acknowledged event to arrive after the last publish
# Sends before a delivery is dead, and the first backoff (doubling): a failing delivery is
# dead after 16-32 s, longer than a subscriber's restart or the node's, which must not kill
# deliveries to subscribers that are merely down for a moment.
MAX_ATTEMPTS = 8
BASE_DELAY = 0.25

SUBSCRIBER_APP = '''
"""An events test app: records the ids of the events delivered to /events in
$RECORD_DIR/<app>.ids (fsync per id); may crash at random ($CRASH_ONE_IN) or fail while
$FAIL_FLAG exists; /workload shows the test its mesh URL and credential (never do that)."""
import os, pathlib, random

import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from courtyard.sdk import EventHandler, IdentityMiddleware, from_environment

APP = os.environ["COURTYARD_APP"]
RECORDS = pathlib.Path(os.environ["RECORD_DIR"])
FAIL_FLAG = os.environ.get("FAIL_FLAG", "")
CRASH_ONE_IN = int(os.environ.get("CRASH_ONE_IN", "0"))
CRASH_AT_MOST = int(os.environ.get("CRASH_AT_MOST", "0"))
RECORD = os.open(RECORDS / f"{APP}.ids", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def append(name, line):
    fd = os.open(RECORDS / name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line}\\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def crash_now():
    if not CRASH_ONE_IN or random.randrange(CRASH_ONE_IN):
        return False
    crashes = RECORDS / f"{APP}.crashes"
    return not crashes.exists() or len(crashes.read_text().splitlines()) < CRASH_AT_MOST


def record(event):
    if FAIL_FLAG and os.path.exists(FAIL_FLAG):
        raise RuntimeError("told to fail")
    crash = crash_now()
    after = random.random() < 0.5  # crash before recording the id, or after (no answer)
    if crash and not after:
        append(f"{APP}.crashes", f"before {event.id}")
        os._exit(3)
    os.write(RECORD, f"{event.id}\\n".encode())
    os.fsync(RECORD)
    if crash:
        append(f"{APP}.crashes", f"after {event.id}")
        os._exit(3)


async def workload(request):
    credential = pathlib.Path(os.environ["COURTYARD_WORKLOAD_CREDENTIAL"]).read_text().strip()
    return JSONResponse({"meshUrl": os.environ["COURTYARD_MESH_URL"], "credential": credential})


async def health(request):
    return JSONResponse({"ok": True})


routes = [
    Route("/events", EventHandler(record), methods=["POST"]),
    Route("/workload", workload),
    Route("/healthz", health),
]
app = IdentityMiddleware(Starlette(routes=routes), verifier=from_environment())
uvicorn.run(app, host="127.0.0.1", port=int(os.environ["PORT"]), log_level="warning")
'''


def write_app(folder: Path, name: str, mesh_spec: str, env: dict[str, str | int]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "app.py").write_text(SUBSCRIBER_APP)
    (folder / "courtyard.yaml").write_text(
        f"""\
apiVersion: courtyard.dev/v1alpha1
kind: Application
metadata: {{name: {name}, owner: team-events, businessOwner: events@example.com}}
spec:
  run:
    command: ["python", "app.py"]
    env: {json.dumps({key: str(value) for key, value in env.items()})}
    health: {{path: /healthz}}
    readyTimeout: 30s
    drainTimeout: 2s
  routes: [{{path: /apps/{name}/}}]
  access: {{public: true}}
{mesh_spec}"""
    )
    return folder


@dataclass
class Publishing:
    """What the publishing threads share: where to publish, and what was acknowledged."""

    mesh_url: str
    credential: str
    acknowledged: dict[str, list[str]] = field(default_factory=dict)  # topic -> ids
    lock: threading.Lock = field(default_factory=threading.Lock)
    failures: int = 0  # publishes not acknowledged (and so tried again)

    def count(self, topic: str) -> int:
        with self.lock:
            return len(self.acknowledged.get(topic, []))


def publish_all(state: Publishing, topic: str, total: int) -> None:
    """Publish until ``total`` publishes to ``topic`` are acknowledged, ``CONCURRENCY`` at
    once; a publish that was not acknowledged (say, the node is down) is tried again with the
    mesh URL and credential of the moment."""
    next_index = iter(range(total))
    take = threading.Lock()

    def worker() -> None:
        with httpx.Client(timeout=30) as client:
            while True:
                with take:
                    index = next(next_index, None)
                if index is None:
                    return
                while True:
                    url, credential = state.mesh_url, state.credential
                    try:
                        answer = client.post(
                            f"{url}/_events/{topic}",
                            json={"n": index},
                            headers={"Authorization": f"Bearer {credential}"},
                        )
                    except httpx.HTTPError:
                        answer = None
                    if answer is not None and answer.status_code == 202:
                        with state.lock:
                            state.acknowledged.setdefault(topic, []).append(answer.json()["id"])
                        break
                    with state.lock:
                        state.failures += 1
                    time.sleep(0.2)

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        for future in [pool.submit(worker) for _ in range(CONCURRENCY)]:
            future.result()


def recorded(records: Path, app: str) -> set[str]:
    path = records / f"{app}.ids"
    return set(path.read_text().split()) if path.exists() else set()


@contextlib.contextmanager
def database(node: NodeProcess) -> Iterator[sqlite3.Connection]:
    path = node.data_dir / "courtyard.db"
    connection = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=10)
    try:
        yield connection
    finally:
        connection.close()


def states_of(node: NodeProcess, subscriber: str) -> dict[str, int]:
    with database(node) as db:
        rows = db.execute(
            "SELECT state, count(*) FROM deliveries WHERE subscriber = ? GROUP BY state",
            (subscriber,),
        ).fetchall()
    return dict(rows)


def test_acknowledged_events_survive_a_node_kill_and_subscriber_crashes(tmp_path: Path) -> None:
    records = tmp_path / "records"
    records.mkdir()
    fail_flag = tmp_path / "broken-fails"
    fail_flag.touch()
    base_env: dict[str, str | int] = {"RECORD_DIR": str(records)}
    apps: dict[str, tuple[str, dict[str, str | int]]] = {
        "publisher": ("  publishes: [orders.created, alerts.raised]\n", {}),
        "ledger": ("  subscribes: [{topic: orders.created, handler: /events}]\n", {}),
        "shipping": (  # crashes at random
            "  subscribes: [{topic: orders.created, handler: /events}]\n",
            {"CRASH_ONE_IN": CRASH_ONE_IN, "CRASH_AT_MOST": CRASH_AT_MOST},
        ),
        "bystander": ("", {}),  # has an /events handler but subscribes to nothing
        "broken": (  # always fails while the flag file exists
            "  subscribes: [{topic: alerts.raised, handler: /events}]\n",
            {"FAIL_FLAG": str(fail_flag)},
        ),
    }
    settings = tmp_path / "courtyard.toml"
    settings.write_text(
        f"[node]\nevents_max_attempts = {MAX_ATTEMPTS}\nevents_base_delay = {BASE_DELAY}\n"
    )
    with running_node(tmp_path / "node", extra=["--config", str(settings)]) as node:
        for name, (spec, env) in apps.items():
            node.cli("deploy", str(write_app(tmp_path / name, name, spec, {**base_env, **env})))
        user = create_user(node, "eve@example.com", "Eve Events")
        with node.api() as api:
            pat = check(api.post(f"/api/v1/users/{user.id}/tokens", json={"name": "ev"}), 201)

        def workload() -> dict[str, str] | None:
            """The publisher's mesh URL and credential, through the gateway as the user."""
            answer = httpx.get(
                f"{node.url}/apps/publisher/workload",
                headers={"Authorization": f"Bearer {pat['token']}"},
                timeout=10,
            )
            if answer.status_code != 200:
                return None  # the node or the app is not up (again) yet
            document: dict[str, str] = answer.json()
            return document

        held = wait_for(workload, 30, "the publisher's workload credential")
        state = Publishing(held["meshUrl"], held["credential"])
        started = time.monotonic()
        orders = threading.Thread(target=publish_all, args=(state, "orders.created", EVENTS))
        alerts = threading.Thread(target=publish_all, args=(state, "alerts.raised", ALERTS))
        orders.start()
        alerts.start()

        # Midway, SIGKILL the node while the publishers go on; start it again on the same data
        # directory. Its mesh listener's port and every credential change: until the test
        # hands the publishers the new ones, every publish fails (and is tried again).
        wait_for(lambda: state.count("orders.created") >= KILL_AFTER, 300, "acknowledgements")
        with state.lock:
            acknowledged_before_kill = set(state.acknowledged["orders.created"])
        undelivered_at_kill = len(acknowledged_before_kill - recorded(records, "ledger"))
        node.kill()
        killed_at = time.monotonic()
        node.start()
        held = wait_for(
            lambda: (w := workload()) and w["credential"] != state.credential and w,
            120,
            "the publisher back behind the restarted node",
        )
        state.mesh_url, state.credential = held["meshUrl"], held["credential"]
        restart_took = time.monotonic() - killed_at

        orders.join()
        alerts.join()
        published_in = time.monotonic() - started
        acknowledged = set(state.acknowledged["orders.created"])
        alert_ids = set(state.acknowledged["alerts.raised"])
        assert len(acknowledged) == EVENTS and len(alert_ids) == ALERTS
        assert acknowledged_before_kill <= acknowledged and len(acknowledged_before_kill) < EVENTS

        # Every acknowledged event reaches both subscribers, at least once.
        def missing() -> dict[str, int]:
            return {
                app: len(acknowledged - recorded(records, app)) for app in ("ledger", "shipping")
            }

        deadline = time.monotonic() + DELIVERY_TIMEOUT
        while any(missing().values()) and time.monotonic() < deadline:
            time.sleep(1)
        delivered_in = time.monotonic() - started
        still_missing = missing()
        print(
            f"\npublished {EVENTS}+{ALERTS} in {published_in:.1f} s "
            f"({state.failures} publishes not acknowledged, tried again); killed with "
            f"{undelivered_at_kill} acknowledged events not yet at ledger; node restart "
            f"{restart_took:.1f} s; all delivered after {delivered_in:.1f} s; "
            f"shipping crashes: {(records / 'shipping.crashes').read_text().split()!r}; "
            f"duplicates ledger/shipping: "
            f"{_duplicates(records, 'ledger')}/{_duplicates(records, 'shipping')}"
        )
        assert not any(still_missing.values()), (still_missing, states_of(node, "shipping"))
        crashes = (records / "shipping.crashes").read_text().splitlines()
        assert 1 <= len(crashes) <= CRASH_AT_MOST, crashes

        # Nobody else got any: neither the app that never subscribed nor the publisher.
        assert recorded(records, "bystander") == set()
        assert recorded(records, "publisher") == set()
        # The failing subscriber got no orders, and recorded none of its alerts (it failed).
        assert recorded(records, "broken") == set()
        with database(node) as db:
            rows = db.execute("SELECT DISTINCT subscriber FROM deliveries").fetchall()
        assert {row[0] for row in rows} == {"ledger", "shipping", "broken"}

        # The always-failing subscriber's deliveries all end dead ...
        wait_for(
            lambda: states_of(node, "broken") == {"dead": ALERTS},
            120,
            "every delivery to the failing subscriber dead",
        )
        dead = json.loads(node.cli("events", "dead", "--topic", "alerts.raised", "--json").stdout)
        assert {item["id"] for item in dead} == alert_ids
        assert {(item["subscriber"], item["handler"]) for item in dead} == {("broken", "/events")}
        assert all(item["attempts"] == MAX_ATTEMPTS for item in dead), dead[:3]

        # ... and once it is mended, a redrive delivers every one.
        fail_flag.unlink()
        redriven = json.loads(node.cli("events", "redrive", "--all", "--json").stdout)
        assert redriven == {"redriven": ALERTS}
        wait_for(lambda: recorded(records, "broken") >= alert_ids, 60, "the redriven alerts")
        assert recorded(records, "broken") == alert_ids
        assert json.loads(node.cli("events", "dead", "--json").stdout) == []


def _duplicates(records: Path, app: str) -> int:
    path = records / f"{app}.ids"
    ids = path.read_text().split() if path.exists() else []
    return len(ids) - len(set(ids))
