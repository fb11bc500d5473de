"""The real delivery sender against a loopback HTTP server standing in for the mesh listener:
the request it makes, and the bus delivering through it."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from courtyard.contracts import MeshPolicy, Subscription
from courtyard.core import FakeClock
from courtyard.mesh._events import EventBus
from courtyard.mesh._events_http import HttpMeshSender
from courtyard.mesh._events_store import MemoryEventStore

T0 = 1_700_000_000.0


class Mesh(ThreadingHTTPServer):
    """Records every request; answers the status in ``statuses`` for its path (else 204)."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.statuses: dict[str, int] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: Mesh

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.requests.append((self.path, dict(self.headers.items()), body))
        status = self.server.statuses.get(self.path, 204)
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def mesh() -> Iterator[Mesh]:
    server = Mesh()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()


async def test_the_sender_posts_a_structured_cloudevent_with_the_workload_credential(
    mesh: Mesh,
) -> None:
    tokens = iter(["first-token", "rotated-token"])
    sender = HttpMeshSender(mesh.url + "/", lambda: next(tokens), clock=FakeClock(start=T0))
    try:
        assert await sender.send("search", "/hooks/notes", '{"id":"e1"}') == 204
        mesh.statuses["/search/in"] = 503
        assert await sender.send("search", "/in", "{}") == 503
    finally:
        await sender.aclose()
    (path, headers, body), (_, second, _) = mesh.requests
    assert (path, body) == ("/search/hooks/notes", b'{"id":"e1"}')
    lowered = {k.lower(): v for k, v in headers.items()}
    assert lowered["content-type"] == "application/cloudevents+json"
    assert lowered["authorization"] == "Bearer first-token"
    assert lowered["courtyard-deadline"] == str(int((T0 + 10) * 1000))
    assert {k.lower(): v for k, v in second.items()}["authorization"] == "Bearer rotated-token"


async def test_no_listener_is_an_exception_the_bus_counts_as_a_failed_attempt() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sender = HttpMeshSender(f"http://127.0.0.1:{port}", lambda: "t")
    store = MemoryEventStore()

    async def policies() -> dict[str, MeshPolicy]:
        return {
            "notes": MeshPolicy(consumes=[], accepts=None, publishes=["n.c"], subscribes=[]),
            "search": MeshPolicy(
                consumes=[],
                accepts=None,
                publishes=[],
                subscribes=[Subscription(topic="n.c", handler="/in")],
            ),
        }

    bus = EventBus(store, policies, sender, clock=FakeClock(start=T0))
    try:
        event_id = await bus.publish("notes", "n.c", b"{}", "application/json")
        assert await bus.deliver_due() == 1
    finally:
        await sender.aclose()
    (delivery,) = store.deliveries(event_id)
    assert delivery.state == "pending" and delivery.attempts == 1
    assert delivery.last_error is not None and delivery.last_error.startswith("no answer: Connect")


async def test_the_bus_delivers_through_the_mesh(mesh: Mesh) -> None:
    store = MemoryEventStore()

    async def policies() -> dict[str, MeshPolicy]:
        subscribe = [Subscription(topic="notes.created", handler="/hooks/notes")]
        return {
            "notes": MeshPolicy(
                consumes=[], accepts=None, publishes=["notes.created"], subscribes=[]
            ),
            "search": MeshPolicy(consumes=[], accepts=None, publishes=[], subscribes=subscribe),
            "mailer": MeshPolicy(consumes=[], accepts=None, publishes=[], subscribes=subscribe),
        }

    mesh.statuses["/mailer/hooks/notes"] = 502
    sender = HttpMeshSender(mesh.url, lambda: "platform-token")
    bus = EventBus(store, policies, sender, clock=FakeClock(start=T0))
    try:
        event_id = await bus.publish("notes", "notes.created", b'{"n": 1}', "application/json")
        assert await bus.deliver_due() == 2
    finally:
        await sender.aclose()
    assert {d.subscriber: d.state for d in store.deliveries(event_id)} == {
        "mailer": "pending",
        "search": "delivered",
    }
    received = {path: json.loads(body) for path, _, body in mesh.requests}
    assert received["/search/hooks/notes"]["id"] == event_id
    assert received["/search/hooks/notes"]["data"] == {"n": 1}
