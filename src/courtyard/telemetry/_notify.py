"""Alert notifications: a signed generic webhook and Slack's incoming-webhook format.

Each delivery runs as its own background task (an evaluation never waits on a receiver), is
retried on connection errors, timeouts, 429 and 5xx with doubling delays, and its outcome is
audited. The webhook signature follows the scheme Stripe and GitHub use: an HMAC-SHA256 over
the timestamp and the exact body, so a receiver can check origin, integrity and freshness
(OWASP ASVS 4.0 V13 and the OWASP "Webhook security" guidance: sign, timestamp, compare in
constant time, reject stale deliveries).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import uuid
from collections.abc import Sequence
from typing import Any, Protocol

import httpx

from courtyard.audit import AuditEvent
from courtyard.core import Clock
from courtyard.telemetry._alerts import SYSTEM, Alert, AuditSink

__all__ = [
    "DELIVERY_HEADER",
    "SIGNATURE_HEADER",
    "Channel",
    "Notifier",
    "SlackChannel",
    "WebhookChannel",
    "sign",
    "verify_signature",
    "webhook_payload",
]

log = logging.getLogger("courtyard.telemetry")

SIGNATURE_HEADER = "Courtyard-Signature"
DELIVERY_HEADER = "Courtyard-Delivery"
MAX_RETRY_AFTER = 60.0  # seconds: the longest Retry-After we honour


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Courtyard-Signature`` value for ``body`` sent at ``timestamp`` (Unix seconds):
    ``t=<timestamp>,v1=<hex HMAC-SHA256(secret, "<timestamp>." + body)>``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify_signature(
    secret: str, header: str, body: bytes, *, now: float, tolerance: float = 300.0
) -> bool:
    """Whether ``header`` (a ``Courtyard-Signature`` value) signs ``body`` with ``secret`` and
    is at most ``tolerance`` seconds away from ``now`` (a replay window). Any of several
    ``v1`` values may match (a secret being rotated); comparisons are constant-time."""
    timestamp: int | None = None
    candidates: list[str] = []
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == "v1":
            candidates.append(value)
    if timestamp is None or abs(now - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, body).rpartition("v1=")[2]
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(expected, candidate)
    return matched


def webhook_payload(alert: Alert) -> dict[str, Any]:
    """The generic webhook document, version 1."""
    return {"version": "1", "status": alert.state, "alert": alert.document()}


class Channel(Protocol):
    """Where notifications go: a URL and how a transition is written for it."""

    kind: str  # "webhook", "slack": recorded in the audit trail

    @property
    def url(self) -> str: ...

    def body(self, alert: Alert) -> bytes: ...

    def headers(self, body: bytes, delivery: str, now: float) -> dict[str, str]:
        """Headers of one attempt (signatures are made afresh for each attempt)."""
        ...


class WebhookChannel:
    """JSON POSTs signed with a shared secret."""

    kind = "webhook"

    def __init__(self, url: str, secret: str) -> None:
        if not secret:
            raise ValueError("a webhook channel needs a secret")
        self._url = url
        self._secret = secret

    def __repr__(self) -> str:  # never the secret
        return f"WebhookChannel({self._url!r})"

    @property
    def url(self) -> str:
        return self._url

    def body(self, alert: Alert) -> bytes:
        return json.dumps(webhook_payload(alert), separators=(",", ":")).encode()

    def headers(self, body: bytes, delivery: str, now: float) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self._secret, int(now), body),
            DELIVERY_HEADER: delivery,
        }


def _mrkdwn(text: str) -> str:
    """Slack's three control characters, escaped (Slack API docs, "Formatting text")."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackChannel:
    """A Slack incoming webhook: ``text`` (the fallback) plus mrkdwn blocks."""

    kind = "slack"

    def __init__(self, url: str) -> None:
        self._url = url

    def __repr__(self) -> str:  # an incoming-webhook URL is itself the credential
        return "SlackChannel(...)"

    @property
    def url(self) -> str:
        return self._url

    def body(self, alert: Alert) -> bytes:
        icon = ":rotating_light:" if alert.state == "firing" else ":white_check_mark:"
        text = f"{icon} [{alert.state.upper()}] {_mrkdwn(alert.summary())}"
        detail = [f"*{text}*"]
        if alert.burn is not None:
            detail.append(_mrkdwn(alert.burn.text()))
        if alert.silenced:
            detail.append("_silenced_")
        context = f"alert `{alert.id}` · `{_mrkdwn(alert.fingerprint)}`"
        document = {
            "text": text,
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(detail)}},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
            ],
        }
        return json.dumps(document).encode()

    def headers(self, body: bytes, delivery: str, now: float) -> dict[str, str]:
        return {"Content-Type": "application/json"}


class Notifier:
    """Sends every transition it is given to every channel, each in a background task."""

    def __init__(
        self,
        channels: Sequence[Channel],
        audit: AuditSink,
        *,
        clock: Clock,
        max_attempts: int = 5,
        base_delay: float = 1.0,
        timeout: float = 10.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.channels = tuple(channels)
        self._audit = audit
        self._clock = clock
        self._max_attempts = max_attempts
        self._base_delay = base_delay
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(timeout=timeout, follow_redirects=False)
        self._tasks: set[asyncio.Task[None]] = set()

    def notify(self, alert: Alert) -> None:
        """Start one delivery per channel and return at once."""
        for channel in self.channels:
            task = asyncio.create_task(self._deliver(channel, alert))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @property
    def pending(self) -> int:
        """Deliveries under way."""
        return len(self._tasks)

    async def drain(self) -> None:
        """Wait until every delivery under way has succeeded or given up."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        """Cancel deliveries under way and close the HTTP client."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._owns_client:
            await self._client.aclose()

    async def _deliver(self, channel: Channel, alert: Alert) -> None:
        delivery = str(uuid.uuid4())  # the same on every attempt: receivers dedupe by it
        body = channel.body(alert)
        attempts, error = 0, ""
        delivered = False
        while not delivered and attempts < self._max_attempts:
            attempts += 1
            delay = self._base_delay * 2 ** (attempts - 1)  # 1, 2, 4, 8 s
            headers = channel.headers(body, delivery, self._clock.time())
            try:
                answer = await self._client.post(channel.url, content=body, headers=headers)
            except httpx.TransportError as exc:  # connect errors, timeouts, resets
                error = type(exc).__name__
            except Exception as exc:  # e.g. a malformed URL: no attempt will do better
                error = type(exc).__name__
                break
            else:
                status = answer.status_code
                if 200 <= status < 300:
                    delivered = True
                    break
                error = f"HTTP {status}"
                if status != 429 and status < 500:
                    break  # the receiver refuses this request: sending it again changes nothing
                delay = max(delay, _retry_after(answer))
            if attempts < self._max_attempts:
                await self._clock.sleep(delay)
        await self._record(channel, alert, delivery, attempts, delivered, error)

    async def _record(
        self,
        channel: Channel,
        alert: Alert,
        delivery: str,
        attempts: int,
        delivered: bool,
        error: str,
    ) -> None:
        if not delivered:
            log.warning(
                "alert %s: %s notification failed after %d attempts (%s)",
                alert.fingerprint,
                channel.kind,
                attempts,
                error,
            )
        event = AuditEvent(
            actor=SYSTEM,
            action="alert.notify",
            target=f"app/{alert.app}",
            outcome="success" if delivered else "failure",
            reason=None if delivered else error,
            details={
                "alert": alert.id,
                "fingerprint": alert.fingerprint,
                "status": alert.state,
                "channel": channel.kind,
                "delivery": delivery,
                "attempts": attempts,
            },
        )
        try:
            await self._audit.record(event)
        except Exception:
            log.exception("could not audit the notification of %s", alert.fingerprint)


def _retry_after(answer: httpx.Response) -> float:
    """A 429/503's ``Retry-After`` in seconds (RFC 9110 §10.2.3; delay-seconds form only),
    capped at :data:`MAX_RETRY_AFTER`; 0 when absent."""
    value = answer.headers.get("retry-after", "").strip()
    return min(float(value), MAX_RETRY_AFTER) if value.isdigit() else 0.0
