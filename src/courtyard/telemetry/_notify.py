"""Alert notifications: a signed generic webhook and Slack's incoming-webhook format.

Deliveries run in the background (an evaluation never waits on a receiver), are retried on
connection errors, timeouts, 429 and 5xx with doubling delays, and each outcome is audited.
The webhook's signature follows the scheme Stripe and GitHub popularised: an HMAC-SHA256 over
the timestamp and the exact body, so a receiver can check origin, integrity and freshness
(OWASP ASVS V13.1 on authenticated webhooks).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Sequence
from typing import Any, Protocol

import httpx

from courtyard.audit import Actor, AuditEvent
from courtyard.core import Clock
from courtyard.telemetry._alerts import Alert, Audit

log = logging.getLogger("courtyard.telemetry")

SIGNATURE_HEADER = "Courtyard-Signature"
DELIVERY_HEADER = "Courtyard-Delivery"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Courtyard-Signature`` value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify_signature(
    secret: str, header: str, body: bytes, *, now: float, tolerance: float = 300.0
) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` and is at most ``tolerance`` seconds
    old (a replay window). The comparison is constant-time."""
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, body).rpartition("v1=")[2]
    return hmac.compare_digest(expected, parts.get("v1", ""))


class Channel(Protocol):
    kind: str

    def request(self, alert: Alert, node: str, now: float) -> tuple[bytes, dict[str, str]]: ...

    @property
    def url(self) -> str: ...


def payload(alert: Alert, node: str) -> dict[str, Any]:
    """The generic webhook document (version 1)."""
    return {"version": "1", "status": alert.state, "node": node, "alert": alert.document()}


class WebhookChannel:
    """JSON POSTs signed with a shared secret."""

    kind = "webhook"

    def __init__(self, url: str, secret: str) -> None:
        self.url = url
        self._secret = secret

    def __repr__(self) -> str:  # never the secret
        return f"WebhookChannel({self.url!r})"

    def request(self, alert: Alert, node: str, now: float) -> tuple[bytes, dict[str, str]]:
        body = json.dumps(payload(alert, node), separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self._secret, int(now), body),
            DELIVERY_HEADER: secrets.token_hex(16),
        }
        return body, headers


class SlackChannel:
    """A Slack incoming webhook: ``text`` plus a mrkdwn section block."""

    kind = "slack"

    def __init__(self, url: str) -> None:
        self.url = url

    def __repr__(self) -> str:  # the URL is the credential
        return "SlackChannel(...)"

    def request(self, alert: Alert, node: str, now: float) -> tuple[bytes, dict[str, str]]:
        icon = ":rotating_light:" if alert.state == "firing" else ":white_check_mark:"
        rule = alert.rule
        detail = (
            f"burn rate {rule.get('burnLong')}x over {rule.get('long')} and "
            f"{rule.get('burnShort')}x over {rule.get('short')} (threshold {rule.get('factor')}x)"
            if rule
            else ""
        )
        text = f"{icon} [{alert.state.upper()}] {alert.summary()}"
        document = {
            "text": text,
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": f"*{text}*\n{detail}"}},
                {
                    "type": "context",
                    "elements": [{"type": "mrkdwn", "text": f"alert `{alert.id}` · {node}"}],
                },
            ],
        }
        return json.dumps(document).encode(), {"Content-Type": "application/json"}


class Notifier:
    """Sends every transition of an unsilenced alert to every channel."""

    def __init__(
        self,
        channels: Sequence[Channel],
        audit: Audit,
        *,
        clock: Clock,
        node: str = "",
        max_attempts: int = 5,
        base_delay: float = 1.0,
        timeout: float = 10.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._channels = list(channels)
        self._audit = audit
        self._clock = clock
        self._node = node
        self._max_attempts = max_attempts
        self._base_delay = base_delay
        self._client = client or httpx.AsyncClient(timeout=timeout, follow_redirects=False)
        self._tasks: set[asyncio.Task[None]] = set()

    async def transition(self, alert: Alert) -> None:
        if alert.silenced:
            return
        for channel in self._channels:
            task = asyncio.create_task(self._deliver(channel, alert))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for every delivery under way."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self._client.aclose()

    async def _deliver(self, channel: Channel, alert: Alert) -> None:
        attempts = 0
        error = ""
        delivered = False
        while attempts < self._max_attempts:
            attempts += 1
            body, headers = channel.request(alert, self._node, self._clock.time())
            try:
                answer = await self._client.post(channel.url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                error = type(exc).__name__
            else:
                if 200 <= answer.status_code < 300:
                    delivered = True
                    break
                error = f"HTTP {answer.status_code}"
                if answer.status_code != 429 and answer.status_code < 500:
                    break  # the receiver refuses this request: sending it again changes nothing
            if attempts < self._max_attempts:
                await self._clock.sleep(self._base_delay * 2 ** (attempts - 1))
        try:
            await self._audit.record(
                AuditEvent(
                    actor=Actor(kind="system", id="courtyard"),
                    action="alert.notify",
                    target=f"app/{alert.app}",
                    outcome="success" if delivered else "failure",
                    reason=None if delivered else error,
                    details={
                        "alert": alert.id,
                        "status": alert.state,
                        "channel": channel.kind,
                        "attempts": attempts,
                    },
                )
            )
        except Exception:
            log.exception("could not audit the notification of %s", alert.fingerprint)
