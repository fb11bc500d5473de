"""Joins the identity provider to the data plane: the credentials and keys every gateway worker
holds, the usage they report back (idle timeouts) and the requests they refused (audit).

Workers never ask the control plane anything on the hot path: every session, API token and
revoked access token is pushed to them here, and a revocation is one line on the channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any, Protocol

from courtyard.audit import Actor, AuditEvent, AuditLog
from courtyard.contracts import (
    AccessDenial,
    CredentialsMessage,
    GatewayAuth,
    GatewayCredential,
    UsageMessage,
)

log = logging.getLogger("courtyard.node")

HOUSEKEEPING_INTERVAL = 5.0  # seconds between key advances and session sweeps


class CredentialSource(Protocol):
    """What the node needs of IAM (courtyard.iam.Iam)."""

    async def gateway_credentials(self) -> list[GatewayCredential]: ...

    async def touch(self, keys: Iterable[str]) -> None: ...

    async def expire_sessions(self) -> int: ...


class KeySource(Protocol):
    """What the node needs of the OIDC provider (courtyard.iam.OidcProvider)."""

    def gateway_auth(self, issuer: str, cookie_name: str) -> GatewayAuth: ...

    def revoked_jti(self) -> list[str]: ...

    async def advance_keys(self) -> bool: ...


class CredentialChannel(Protocol):
    """Where credential changes go (the control channel's server)."""

    def publish_credentials(self, message: CredentialsMessage) -> int: ...

    async def wait_credentials(self, seq: int, timeout: float) -> bool: ...


class AuthPublisher(Protocol):
    """Where the gateway's identity settings go (the data plane's snapshots)."""

    def set_auth(self, auth: GatewayAuth | None) -> None: ...

    async def sync(self) -> None: ...


class IdentityFeed:
    """Keeps every gateway worker's credential table and keys equal to IAM's and the OIDC
    provider's, and turns the workers' usage reports into session activity and audit entries."""

    def __init__(
        self,
        credentials: CredentialSource,
        keys: KeySource,
        audit: AuditLog,
        *,
        issuer: str,
        cookie_name: str,
    ) -> None:
        self._credentials = credentials
        self._keys = keys
        self._audit = audit
        self._issuer = issuer
        self._cookie_name = cookie_name
        self._table: dict[str, GatewayCredential] = {}
        self._revoked: set[str] = set()
        self._channel: CredentialChannel | None = None
        self._auth: AuthPublisher | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sent = 0  # seq of the last credentials message published

    def gateway_auth(self) -> GatewayAuth:
        """The identity settings for the next gateway snapshot."""
        return self._keys.gateway_auth(self._issuer, self._cookie_name)

    async def load(self) -> None:
        """Read every live credential (before the first worker connects)."""
        self._table = {c["key"]: c for c in await self._credentials.gateway_credentials()}
        self._revoked = set(self._keys.revoked_jti())

    def bind(self, channel: CredentialChannel, auth: AuthPublisher) -> None:
        """Name where changes go once the control channel and data plane exist."""
        self._channel = channel
        self._auth = auth
        auth.set_auth(self.gateway_auth())

    def full_message(self) -> CredentialsMessage:
        """Everything a newly connected worker must know."""
        # The provider's list drops tokens that have expired anyway, so this one stays small.
        self._revoked = set(self._keys.revoked_jti())
        return CredentialsMessage(
            type="credentials",
            seq=0,
            full=True,
            upsert=list(self._table.values()),
            revoke=[],
            revoked_jti=sorted(self._revoked),
        )

    # -- changes from IAM and the OIDC provider ------------------------------------------

    def credentials_changed(self, upserts: list[GatewayCredential], revoked: list[str]) -> None:
        """IAM's listener: sessions or tokens were created, changed or revoked."""
        for credential in upserts:
            self._table[credential["key"]] = credential
        for key in revoked:
            self._table.pop(key, None)
        self._send(
            CredentialsMessage(
                type="credentials",
                seq=0,
                full=False,
                upsert=upserts,
                revoke=revoked,
                revoked_jti=[],
            )
        )

    def tokens_revoked(self, jtis: list[str]) -> None:
        """The OIDC provider's listener: access tokens were revoked before they expired."""
        fresh = [jti for jti in jtis if jti not in self._revoked]
        if not fresh:
            return
        self._revoked.update(fresh)
        self._send(
            CredentialsMessage(
                type="credentials", seq=0, full=False, upsert=[], revoke=[], revoked_jti=fresh
            )
        )

    def keys_changed(self) -> None:
        """The key ring changed: republish the gateway's identity settings."""
        if self._auth is None:
            return
        self._auth.set_auth(self.gateway_auth())
        self._spawn(self._auth.sync())

    def _send(self, message: CredentialsMessage) -> None:
        if self._channel is not None:
            self._sent = self._channel.publish_credentials(message)

    def mark(self) -> int:
        """Where the credential stream is now (see :meth:`settle`)."""
        return self._sent

    async def settle(self, since: int, timeout: float = 1.0) -> None:
        """If credentials changed after ``since``, wait (at most ``timeout``) until every
        worker applied them: the control plane answers a sign-in, a new token or a revocation
        only once the gateway enforces it."""
        channel = self._channel
        if (
            channel is not None
            and self._sent > since
            and not await channel.wait_credentials(self._sent, timeout)
        ):
            log.warning("gateway workers did not apply credentials within %.1f s", timeout)

    # -- reports from the workers --------------------------------------------------------

    def usage(self, message: UsageMessage) -> None:
        """A worker's usage report: keep used sessions alive, audit refused requests."""
        used = message["used"]
        if used:
            self._spawn(self._credentials.touch(used))
        for denial in message["denials"]:
            self._spawn(self._audit.record(_denial_event(denial)))

    async def housekeeping(self) -> None:
        """Advance signing keys and end idle or expired sessions, forever."""
        while True:
            await asyncio.sleep(HOUSEKEEPING_INTERVAL)
            try:
                if await self._keys.advance_keys():
                    self.keys_changed()
                await self._credentials.expire_sessions()
            except Exception:  # a failed sweep must not end the loop; the next one retries
                log.exception("identity housekeeping failed")

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("identity feed task failed", exc_info=task.exception())

    async def aclose(self) -> None:
        """Finish what is in flight (audit entries of denials above all)."""
        if self._tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait(list(self._tasks), timeout=10)


def _denial_event(denial: AccessDenial) -> AuditEvent:
    subject = denial["subject"]
    if subject == "-":
        actor = Actor(kind="user", id="anonymous")
    else:
        service = subject.startswith(("svc:", "spiffe://"))
        actor = Actor(kind="service" if service else "user", id=subject)
    return AuditEvent(
        actor=actor,
        action="access.deny",
        target=f"app:{denial['app']}",
        outcome="denied",
        reason=denial["reason"],
        request_id=denial["request_id"] or None,
        details={
            "status": denial["status"],
            "method": denial["method"],
            "path": denial["path"][:512],
            "client": denial["client"],
        },
    )
