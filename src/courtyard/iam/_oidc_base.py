"""What the OpenID Connect provider's parts share: the ports it calls (people directory, audit
trail), its state (store, keys, client cache, revocation feed) and how it audits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from courtyard.audit import Actor, AuditEvent, Outcome
from courtyard.contracts import IdentityClaims
from courtyard.core import Clock, SystemClock
from courtyard.iam._errors import IamError
from courtyard.iam._keyring import KeyRing
from courtyard.iam._oidc_grants import discovery_document
from courtyard.iam._oidc_models import ClientInfo, ClientRecord, OidcConfig
from courtyard.iam._oidc_store import Jti, OidcStore


class OidcPrincipal(Protocol):
    """What the provider needs of an authenticated person (``courtyard.iam.Principal``)."""

    @property
    def kind(self) -> str: ...
    @property
    def id(self) -> str: ...
    @property
    def session_id(self) -> str | None: ...
    def claims(self, app: str | None = None) -> IdentityClaims: ...


class UserSource(Protocol):
    """The people directory and its sessions (``courtyard.iam.Iam`` satisfies it)."""

    async def principal_of(self, ref: str) -> OidcPrincipal:
        """The principal ``ref`` names (user id, email or ``svc:<name>``); raises IamError."""
        ...

    async def authenticate_session(self, cookie: str) -> OidcPrincipal | None:
        """The principal signed in with session cookie ``cookie``, or None."""
        ...

    async def logout(self, cookie: str) -> None:
        """End the session of ``cookie``."""
        ...


class AuditRecorder(Protocol):
    """Where the provider reports what it did (``courtyard.audit.AuditLog``)."""

    async def record(self, event: AuditEvent) -> object: ...


class Caller(Protocol):
    """Who asks for an administrative change (``courtyard.iam.Principal``)."""

    @property
    def kind(self) -> str: ...
    @property
    def id(self) -> str: ...
    @property
    def auth(self) -> str: ...


@dataclass(frozen=True)
class LogoutOutcome:
    """What RP-initiated logout decided (OIDC RP-Initiated Logout 1.0 §2, §3).

    ``status``: "redirect" (to ``url``), "signed_out" (show a page), "confirm" (ask the user
    first: no valid id_token_hint, so the request may not be the user's own), or "error".
    """

    status: Literal["redirect", "signed_out", "confirm", "error"]
    url: str | None = None
    message: str = ""
    clear_cookie: bool = False


_SYSTEM = Actor("system", "courtyard")


class ProviderCore:
    """State and helpers shared by the token endpoints and the provider facade."""

    def __init__(
        self,
        store: OidcStore,
        keys: KeyRing,
        users: UserSource,
        audit: AuditRecorder,
        config: OidcConfig,
        *,
        clock: Clock | None = None,
    ) -> None:
        self._store = store
        self._keys = keys
        self._users = users
        self._audit = audit
        self._config = config
        self._clock = clock or SystemClock()
        self._discovery = discovery_document(config.issuer)
        # Clients change only through this object, so this cache is exact; it keeps the
        # client_credentials grant free of database round trips.
        self._clients: dict[str, ClientRecord] = {}
        self._revoked: dict[str, float] = {}
        self._revoked_listeners: list[Callable[[list[str]], None]] = []

    @property
    def config(self) -> OidcConfig:
        return self._config

    async def _client(self, client_id: str) -> ClientRecord:
        record = self._clients.get(client_id)
        if record is None:
            record = await asyncio.to_thread(self._store.get_client, client_id)
            self._clients[client_id] = record
        return record

    async def _client_or_none(self, client_id: str) -> ClientRecord | None:
        if not client_id or len(client_id) > 64:
            return None
        try:
            return await self._client(client_id)
        except IamError:
            return None

    def _revoked_now(self, jtis: Sequence[Jti]) -> None:
        if not jtis:
            return
        for jti, exp in jtis:
            self._revoked[jti] = exp
        names = [jti for jti, _ in jtis]
        for listener in list(self._revoked_listeners):
            listener(names)

    # -- audit -------------------------------------------------------------------------------

    async def _record(
        self,
        caller: Caller | None,
        action: str,
        target: str,
        *,
        outcome: Outcome = "success",
        reason: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        actor = _SYSTEM
        if caller is not None:
            kind = caller.kind if caller.kind in ("user", "service") else "system"
            actor = Actor(kind, caller.id, caller.auth or None)  # type: ignore[arg-type]
        await self._audit.record(
            AuditEvent(actor, action, target, outcome, reason=reason, details=details or {})
        )

    async def _record_issue(
        self, client: ClientInfo, grant: str, subject: str, scope: Sequence[str]
    ) -> None:
        actor = _client_actor(client) if grant == "client_credentials" else _user_actor(subject)
        await self._audit.record(
            AuditEvent(
                actor,
                "auth.token.issue",
                f"oauth-client:{client.client_id}",
                "success",
                details={
                    "grant": grant,
                    "client": client.client_id,
                    "subject": subject,
                    "scope": " ".join(scope),
                },
            )
        )

    async def _record_reuse(self, client: ClientInfo, subject: str, reason: str) -> None:
        await self._audit.record(
            AuditEvent(
                _client_actor(client),
                "auth.token.reuse",
                f"oauth-client:{client.client_id}",
                "denied",
                reason=f"{reason}: every token of the grant revoked",
                details={"client": client.client_id, "subject": subject},
            )
        )

    async def _record_revoke(self, client: ClientInfo, subject: str, kind: str) -> None:
        await self._audit.record(
            AuditEvent(
                _client_actor(client),
                "auth.token.revoke",
                f"oauth-client:{client.client_id}",
                "success",
                details={"client": client.client_id, "subject": subject, "kind": kind},
            )
        )


def _client_actor(client: ClientInfo) -> Actor:
    return Actor(
        "service", f"svc:{client.client_id}", "client" if client.public else "client_secret"
    )


def _user_actor(subject: str) -> Actor:
    return Actor("user", subject, "oidc")
