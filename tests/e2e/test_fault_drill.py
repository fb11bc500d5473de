"""Issue 6's fault drill on a whole node: a new revision of an app starts failing half of its
requests -> the page alert fires -> a local webhook receiver gets a correctly signed
notification -> the declared remediation (roll back) runs -> errors stop -> the alert
resolves; each step is in the audit trail.

Everything is real — gateway worker processes, app processes, SQLite, the audit trail, the
webhook receiver on loopback — except the clock of the SLO windows: the node is given a fake
one, so the test moves the alert windows (5 minutes, 1 hour, 6 hours) forward in a moment
instead of waiting them out.
"""

from __future__ import annotations

import asyncio
import json
import textwrap
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from courtyard.catalog import make_bundle
from courtyard.core import FakeClock
from courtyard.node import Node, load_config
from courtyard.telemetry import verify_signature

pytestmark = pytest.mark.slow

SECRET = "drill-webhook-secret"

APP = '''
"""The drill's app: answers 500 to a share (FAIL_RATIO) of requests, evenly spread."""
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RATIO = float(os.environ.get("FAIL_RATIO", "0"))
SEEN = [0]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        status = 200
        if self.path != "/healthz":
            SEEN[0] += 1
            if int(SEEN[0] * RATIO) != int((SEEN[0] - 1) * RATIO):
                status = 500
        body = b"ok" if status == 200 else b"injected fault"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
'''

MANIFEST = """\
apiVersion: courtyard.dev/v1alpha1
kind: Application
metadata: {{name: drill, owner: team-sre, businessOwner: sre@example.com}}
spec:
  run:
    command: [python, app.py]
    env: {{FAIL_RATIO: "{ratio}"}}
    health: {{path: /healthz}}
  access: {{public: true}}
  slos:
    - {{name: availability, indicator: availability, objective: 99.9}}
  remediation:
    - {{severity: page, action: rollback}}
"""


class Receiver:
    """A webhook receiver on loopback that keeps what it is sent."""

    def __init__(self) -> None:
        self.posts: list[tuple[dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.posts.append((dict(self.headers), body))
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/courtyard"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.server.shutdown()
    found.server.server_close()


def write_app(folder: Path, ratio: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "app.py").write_text(textwrap.dedent(APP))
    (folder / "courtyard.yaml").write_text(MANIFEST.format(ratio=ratio))
    return folder


async def until(condition: Any, what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def hit(client: httpx.AsyncClient, count: int) -> list[int]:
    return [(await client.get("/apps/drill/")).status_code for _ in range(count)]


async def test_fault_drill(tmp_path: Path, receiver: Receiver) -> None:
    clock = FakeClock(time.time())
    config = load_config(
        {
            "data_dir": tmp_path / "node",
            "port": 0,
            "admin_port": 0,
            "notify_webhook_url": receiver.url,
            "notify_webhook_secret": SECRET,
            "alert_interval": 86400.0,  # the test evaluates by itself, at moments it chooses
        }
    )
    node = Node(config, clock=clock)
    ready = asyncio.Event()
    running = asyncio.create_task(
        node.run(
            admin_password="a drill passphrase nobody guesses",
            on_ready=lambda _: ready.set(),
            handle_signals=False,
        )
    )
    try:
        await asyncio.wait_for(ready.wait(), 60)
        lifecycle, observe = node.lifecycle, node.observability
        assert lifecycle is not None and observe is not None
        telemetry, engine = observe.telemetry, observe.engine

        # Revision 1 is healthy.
        await lifecycle.deploy_bundle(make_bundle(write_app(tmp_path / "v1", "0")))
        await lifecycle.wait_idle()
        async with httpx.AsyncClient(base_url=node.url, timeout=10) as client:
            assert set(await hit(client, 100)) == {200}
            await until(lambda: telemetry.signals("drill").requests >= 100, "healthy traffic")
            assert await engine.evaluate() == []

            # Revision 2 fails every second request.
            await lifecycle.deploy_bundle(make_bundle(write_app(tmp_path / "v2", "0.5")))
            await lifecycle.wait_idle()
            assert (await lifecycle.catalog.get("drill")).current_revision == 2
            statuses = await hit(client, 200)
            assert statuses.count(500) == 100
            await until(lambda: telemetry.signals("drill").errors >= 100, "the errors counted")

            # The page fires at the next evaluation (burn rate 250x over 5 min and 1 hour).
            await clock.advance(10)
            fired = [a for a in await engine.evaluate() if a.state == "firing"]
            page = next(a for a in fired if a.severity == "page")
            assert page.fingerprint == "drill/availability/page"
            await engine.drain()
            await observe.notifier.drain()

            # The webhook got a signed notification.
            posts = [json.loads(body) for _, body in receiver.posts]
            firing = [p for p in posts if p["status"] == "firing"]
            assert [p["alert"]["fingerprint"] for p in firing].count(page.fingerprint) == 1
            headers, body = next(
                (h, b) for h, b in receiver.posts if json.loads(b)["alert"]["id"] == page.id
            )
            signature = headers.get("Courtyard-Signature") or headers["courtyard-signature"]
            assert verify_signature(SECRET, signature, body, now=time.time())
            assert not verify_signature("not-the-secret", signature, body, now=time.time())

            # The runbook rolled the app back to revision 1, and the errors stopped.
            await lifecycle.wait_idle()
            assert (await lifecycle.catalog.get("drill")).current_revision == 1
            rollout = lifecycle.rollout_of("drill")
            assert rollout is not None and rollout.state == "succeeded" and rollout.revision == 1
            assert set(await hit(client, 200)) == {200}

        # Time passes with healthy traffic: the short windows (5 min, 30 min) forget the
        # errors and the page resolves.
        resolved = []
        for _ in range(40):
            await clock.advance(60)
            resolved += [a for a in await engine.evaluate() if a.state == "resolved"]
            if any(a.fingerprint == page.fingerprint for a in resolved):
                break
        assert any(a.fingerprint == page.fingerprint for a in resolved)
        await observe.notifier.drain()
        statuses_sent = [json.loads(body)["status"] for _, body in receiver.posts]
        assert "resolved" in statuses_sent

        # Each step is in the audit trail, in order.
        token = (config.data_dir / "admin.token").read_text().strip()
        async with httpx.AsyncClient(
            base_url=node.url, headers={"Authorization": f"Bearer {token}"}, timeout=10
        ) as api:
            answer = await api.get("/api/v1/audit", params={"target": "app/drill", "limit": 1000})
            entries = answer.json()["entries"]
        steps = [
            (entry["action"], entry["outcome"])
            for entry in entries
            if entry["action"].startswith(("alert.", "remediation.", "app.rollback"))
            or (entry["action"] == "app.deploy")
        ]

        def first(action: str) -> int:
            return next(i for i, step in enumerate(steps) if step == (action, "success"))

        # remediation.run is written once the action returned, with its result: after the
        # lifecycle's own app.rollback entry.
        assert (
            first("app.deploy")
            < first("alert.fire")
            < first("app.rollback")
            < first("remediation.run")
            < first("alert.resolve")
        )
        assert ("alert.notify", "success") in steps
        assert ("alert.resolve", "success") in steps
        run = next(e for e in entries if e["action"] == "remediation.run")
        assert run["details"]["alert"] == page.id and run["details"]["action"] == "rollback"
        assert run["actor"]["id"] == "courtyard"
        rollback = next(e for e in entries if e["action"] == "app.rollback")
        assert rollback["actor"]["id"] == "courtyard-remediation"
        assert rollback["details"] == {"from": 2, "revision": 1}
    finally:
        node.request_stop()
        await asyncio.wait_for(running, 60)
