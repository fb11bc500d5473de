"""Notifications against a real HTTP receiver on 127.0.0.1: the webhook is signed so a
receiver can verify it, retried with doubling delays on 5xx/429/connection errors, given up
on other 4xx, audited; Slack gets its incoming-webhook shape. Delays go through a clock that
jumps instead of sleeping."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from courtyard.core import FakeClock
from courtyard.telemetry._alerts import Alert, Burn
from courtyard.telemetry._notify import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    Notifier,
    SlackChannel,
    WebhookChannel,
    sign,
    verify_signature,
)
from fakes import RecordingAudit

SECRET = "whsec-test-0123456789"
NOW = 1_700_000_000.0


class JumpClock(FakeClock):
    """A fake clock whose sleeps return at once, moving time and remembering the delay."""

    def __init__(self) -> None:
        super().__init__(NOW)
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self._now += seconds
        await asyncio.sleep(0)


@dataclass
class Receiver:
    """A tiny HTTP server: answers ``statuses`` in turn (then 200), records what it got."""

    url: str = ""
    statuses: list[int] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)  # extra response headers
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    gate: threading.Event = field(default_factory=threading.Event)

    def answer(self) -> int:
        return self.statuses.pop(0) if self.statuses else 200


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()
    state.gate.set()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state.gate.wait(10)
            state.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            status = state.answer()
            self.send_response(status)
            for name, value in state.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        yield state
    finally:
        state.gate.set()
        server.shutdown()
        server.server_close()
        thread.join()


def alert(state: str = "firing") -> Alert:
    return Alert(
        id="a1b2c3d4e5f60718",
        app="shop",
        slo="availability",
        severity="page",
        state=state,  # type: ignore[arg-type]
        started_at=NOW - 60,
        resolved_at=NOW if state == "resolved" else None,
        burn=Burn("1h", "5m", 13.44, 16.4, 1000.0, 120),
    )


async def send(notifier: Notifier, *alerts: Alert) -> None:
    try:
        for item in alerts:
            notifier.notify(item)
        await notifier.drain()
    finally:
        await notifier.aclose()


async def test_the_webhook_is_signed_and_retried_until_the_receiver_takes_it(
    receiver: Receiver,
) -> None:
    receiver.statuses = [503, 503]
    audit, clock = RecordingAudit(), JumpClock()
    notifier = Notifier([WebhookChannel(receiver.url, SECRET)], audit, clock=clock)
    await send(notifier, alert())

    assert len(receiver.received) == 3
    assert clock.sleeps == [1.0, 2.0]
    deliveries = {headers[DELIVERY_HEADER.lower()] for headers, _ in receiver.received}
    assert len(deliveries) == 1  # one delivery id across retries
    for headers, body in receiver.received:
        assert headers["content-type"] == "application/json"
        signature = headers[SIGNATURE_HEADER.lower()]
        assert verify_signature(SECRET, signature, body, now=clock.time())
        assert not verify_signature("another-secret", signature, body, now=clock.time())
    document = json.loads(receiver.received[-1][1])
    assert document["version"] == "1"
    assert document["status"] == "firing"
    assert document["alert"]["fingerprint"] == "shop/availability/page"
    assert document["alert"]["burn"]["long"] == "1h"
    [event] = audit.events
    assert event.action == "alert.notify" and event.outcome == "success"
    assert event.target == "app/shop"
    assert event.details["channel"] == "webhook"
    assert event.details["attempts"] == 3
    assert event.details["delivery"] in deliveries
    assert SECRET not in event.details_json and SECRET not in repr(notifier.channels)


async def test_a_receiver_that_keeps_failing_is_given_up_after_five_attempts(
    receiver: Receiver,
) -> None:
    receiver.statuses = [500] * 10
    audit, clock = RecordingAudit(), JumpClock()
    await send(Notifier([WebhookChannel(receiver.url, SECRET)], audit, clock=clock), alert())
    assert len(receiver.received) == 5
    assert clock.sleeps == [1.0, 2.0, 4.0, 8.0]
    [event] = audit.events
    assert event.outcome == "failure" and event.reason == "HTTP 500"
    assert event.details["attempts"] == 5


async def test_a_client_error_is_not_retried(receiver: Receiver) -> None:
    receiver.statuses = [400]
    audit, clock = RecordingAudit(), JumpClock()
    await send(Notifier([WebhookChannel(receiver.url, SECRET)], audit, clock=clock), alert())
    assert len(receiver.received) == 1 and clock.sleeps == []
    assert audit.events[0].outcome == "failure"
    assert audit.events[0].details["attempts"] == 1


async def test_429_is_retried_after_the_delay_the_receiver_asks(receiver: Receiver) -> None:
    receiver.statuses = [429]
    receiver.headers = {"Retry-After": "7"}
    audit, clock = RecordingAudit(), JumpClock()
    await send(Notifier([WebhookChannel(receiver.url, SECRET)], audit, clock=clock), alert())
    assert len(receiver.received) == 2
    assert clock.sleeps == [7.0]


async def test_connection_errors_are_retried_and_audited() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nobody listens
    audit, clock = RecordingAudit(), JumpClock()
    channel = WebhookChannel(f"http://127.0.0.1:{port}/hook", SECRET)
    await send(Notifier([channel], audit, clock=clock, max_attempts=3), alert())
    assert clock.sleeps == [1.0, 2.0]
    [event] = audit.events
    assert event.outcome == "failure" and event.reason == "ConnectError"
    assert event.details["attempts"] == 3


async def test_notify_returns_before_the_receiver_answers(receiver: Receiver) -> None:
    receiver.gate.clear()
    audit, clock = RecordingAudit(), JumpClock()
    notifier = Notifier([WebhookChannel(receiver.url, SECRET)], audit, clock=clock)
    notifier.notify(alert())
    assert notifier.pending == 1 and audit.events == []
    receiver.gate.set()
    await send(notifier)
    assert notifier.pending == 0 and len(audit.events) == 1


async def test_aclose_cancels_deliveries_under_way(receiver: Receiver) -> None:
    receiver.statuses = [503] * 10
    audit = RecordingAudit()
    notifier = Notifier([WebhookChannel(receiver.url, SECRET)], audit, clock=FakeClock(NOW))
    notifier.notify(alert())
    while not receiver.received:  # the first attempt reached the receiver
        await asyncio.sleep(0.01)
    await notifier.aclose()
    assert notifier.pending == 0


async def test_slack_gets_text_and_mrkdwn_blocks(receiver: Receiver) -> None:
    audit, clock = RecordingAudit(), JumpClock()
    notifier = Notifier(
        [SlackChannel(receiver.url), WebhookChannel(receiver.url, SECRET)], audit, clock=clock
    )
    await send(notifier, alert(), alert("resolved"))
    slack = [
        json.loads(body)
        for headers, body in receiver.received
        if SIGNATURE_HEADER.lower() not in headers
    ]
    assert len(slack) == 2
    firing = next(d for d in slack if "FIRING" in d["text"])
    assert firing["text"] == (
        ":rotating_light: [FIRING] shop: SLO availability is burning its error budget (page)"
    )
    section, context = firing["blocks"]
    assert section["type"] == "section" and section["text"]["type"] == "mrkdwn"
    assert "over 1h" in section["text"]["text"] and "13.44x" in section["text"]["text"]
    assert context["type"] == "context"
    assert context["elements"][0]["type"] == "mrkdwn"
    assert "`a1b2c3d4e5f60718`" in context["elements"][0]["text"]
    resolved = next(d for d in slack if "RESOLVED" in d["text"])
    assert resolved["text"].startswith(":white_check_mark: [RESOLVED] shop: SLO availability")
    assert sorted(e.details["channel"] for e in audit.events) == [
        "slack",
        "slack",
        "webhook",
        "webhook",
    ]
    assert repr(notifier.channels[0]) == "SlackChannel(...)"  # the URL is the credential


def test_slack_escapes_its_control_characters() -> None:
    odd = Alert(id="x", app="a<b>&c", slo="s", severity="ticket", state="firing", started_at=NOW)
    text = json.loads(SlackChannel("http://127.0.0.1/").body(odd))["text"]
    assert "a&lt;b&gt;&amp;c" in text and "<b>" not in text


@pytest.mark.parametrize(
    ("header", "body", "now", "expected"),
    [
        (sign(SECRET, int(NOW), b"{}"), b"{}", NOW, True),
        (sign(SECRET, int(NOW), b"{}"), b"{} ", NOW, False),  # the body was changed
        (sign(SECRET, int(NOW), b"{}"), b"{}", NOW + 301, False),  # too old: a replay
        (sign(SECRET, int(NOW), b"{}"), b"{}", NOW - 301, False),  # from the future
        (sign(SECRET, int(NOW), b"{}"), b"{}", NOW + 300, True),
        ("v1=" + "0" * 64, b"{}", NOW, False),  # no timestamp
        (f"t={int(NOW)}", b"{}", NOW, False),  # no signature
        ("garbage", b"{}", NOW, False),
        # Two signatures while the secret rotates: either may match.
        (
            f"t={int(NOW)},v1={'0' * 64},v1=" + sign(SECRET, int(NOW), b"{}").rpartition("v1=")[2],
            b"{}",
            NOW,
            True,
        ),
    ],
)
def test_verify_signature(header: str, body: bytes, now: float, expected: bool) -> None:
    assert verify_signature(SECRET, header, body, now=now) is expected


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    digest = hmac.new(SECRET.encode(), b"1700000000.{}", hashlib.sha256).hexdigest()
    assert sign(SECRET, 1_700_000_000, b"{}") == f"t=1700000000,v1={digest}"


def test_a_webhook_needs_a_secret() -> None:
    with pytest.raises(ValueError, match="secret"):
        WebhookChannel("http://127.0.0.1/", "")
