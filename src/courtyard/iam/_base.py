"""What every part of the IAM service shares: its state, the store in worker threads, the
audit trail, the credential feed to the gateways and the principal of a user or service.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any, Protocol, TypeVar

from courtyard.audit import Actor, AuditEvent, Outcome
from courtyard.contracts import GatewayCredential
from courtyard.core import Clock, SystemClock
from courtyard.iam._errors import ServiceAccountNotFound, UserNotFound
from courtyard.iam._models import IamConfig, Principal, TokenRecord, UserRecord
from courtyard.iam._passwords import PasswordHasher, PasswordPolicy
from courtyard.iam._principals import service_principal, user_principal
from courtyard.iam._sessions import PendingSignIn, auth_method, session_credential, token_credential
from courtyard.iam._store import IamStore
from courtyard.iam._throttle import LoginThrottle, ThrottlePolicy
from courtyard.iam._totp import TotpVerifier

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

CredentialListener = Callable[[list[GatewayCredential], list[str]], None]
_SYSTEM = Actor("system", "courtyard")
# OWASP Authentication Cheat Sheet: delays grow with failures but stay short enough that the
# real owner gets in after waiting, so an attacker cannot lock anyone out.
DEFAULT_THROTTLE = ThrottlePolicy(base_delay=1.0, max_delay=30.0)


class AuditRecorder(Protocol):
    """Where the service reports what it did (``courtyard.audit.AuditLog`` satisfies it)."""

    async def record(self, event: AuditEvent) -> object: ...


def normalize_email(email: str) -> str:
    """E-mails compare case-insensitively: stored and looked up stripped and lower-cased."""
    return email.strip().lower()


class IamBase:
    """State and plumbing of :class:`courtyard.iam.Iam` (its parts are mixins over this)."""

    def __init__(
        self,
        store: IamStore,
        config: IamConfig,
        audit: AuditRecorder,
        *,
        clock: Clock | None = None,
        hasher: PasswordHasher | None = None,
        throttle: LoginThrottle | None = None,
    ) -> None:
        self._store = store
        self._config = config
        self._audit = audit
        self._clock = clock if clock is not None else SystemClock()
        self._hasher = hasher if hasher is not None else PasswordHasher()
        self._throttle = throttle or LoginThrottle(self._clock, DEFAULT_THROTTLE)
        self._policy = PasswordPolicy()
        self._totp = TotpVerifier(self._clock)
        self._pending: dict[str, PendingSignIn] = {}
        self._listeners: list[CredentialListener] = []

    @property
    def config(self) -> IamConfig:
        return self._config

    # -- plumbing -----------------------------------------------------------------------------

    async def _run(self, function: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.to_thread(function, *args)

    async def _record(
        self,
        actor: Actor | Principal | None,
        action: str,
        target: str,
        outcome: Outcome = "success",
        *,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        if actor is None:
            actor = _SYSTEM
        elif isinstance(actor, Principal):
            actor = Actor(actor.kind, actor.id, actor.auth)
        event = AuditEvent(
            actor=actor,
            action=action,
            target=target[:1024],
            outcome=outcome,
            reason=reason,
            details=details or {},
        )
        await self._audit.record(event)

    def subscribe(self, listener: CredentialListener) -> None:
        """Call ``listener(upserts, revoked_keys)`` after every change to live credentials."""
        self._listeners.append(listener)

    def _notify(self, upserts: list[GatewayCredential], revoked: list[str]) -> None:
        if not upserts and not revoked:
            return
        for listener in self._listeners:
            try:
                listener(list(upserts), list(revoked))
            except Exception:  # a broken subscriber must not undo a committed change
                _log.exception("IAM credential listener failed")

    async def _user(self, ref: str) -> UserRecord:
        ref = ref.strip()
        if "@" in ref:
            found = await self._run(self._store.find_user, normalize_email(ref))
            if found is None:
                raise UserNotFound(ref)
            return found
        return await self._run(self._store.get_user, ref)

    async def _service_principal(
        self, name: str, *, auth: str, scopes: tuple[str, ...] = ()
    ) -> Principal:
        return await self._run(service_principal, self._store, name, auth, scopes)

    async def _end_sessions(self, user_id: str, *, keep: str | None) -> None:
        sessions = await self._run(self._store.list_sessions, user_id)
        ids = [s.id for s in sessions if s.id != keep]
        revoked = await self._run(self._store.revoke_sessions, ids, self._clock.time())
        self._notify([], [s.key_hash for s in revoked])

    async def _token_principal(self, record: TokenRecord) -> Principal | None:
        kind, _, ref = record.owner.partition(":")
        try:
            if kind == "service":
                return await self._service_principal(ref, auth="token", scopes=record.scopes)
            user = await self._run(self._store.get_user, ref)
        except (UserNotFound, ServiceAccountNotFound):
            return None
        if user.status != "active":
            return None
        return await self._run(user_principal, self._store, user, "token", None, record.scopes)

    async def _refresh_users(self, user_ids: Iterable[str]) -> None:
        upserts: list[GatewayCredential] = []
        revoked: list[str] = []
        for user_id in sorted(set(user_ids)):
            live, dead = await self._run(self._user_credentials, user_id)
            upserts.extend(live)
            revoked.extend(dead)
        self._notify(upserts, revoked)

    async def _refresh_subject(self, subject: str) -> None:
        kind, _, value = subject.partition(":")
        if kind == "user":
            await self._refresh_users([value])
        elif kind == "group":
            group = await self._run(self._store.get_group, value)
            await self._refresh_users(group.members)
        else:
            upserts = await self._run(self._credentials_of, subject)
            self._notify(upserts, [])

    async def _credential_keys(self, user_id: str) -> list[str]:
        sessions = await self._run(self._store.list_sessions, user_id)
        tokens = await self._run(self._store.list_tokens, f"user:{user_id}")
        return [s.key_hash for s in sessions] + [
            t.lookup_hash for t in tokens if t.revoked_at is None
        ]

    def _user_credentials(self, user_id: str) -> tuple[list[GatewayCredential], list[str]]:
        """(live credentials, keys to drop) of one user, for the gateway."""
        try:
            record = self._store.get_user(user_id)
        except UserNotFound:
            return [], []
        now = self._clock.time()
        sessions = [s for s in self._store.list_sessions(user_id) if s.is_live(now)]
        tokens = [t for t in self._store.list_tokens(f"user:{user_id}") if t.is_live(now)]
        if record.status != "active":
            return [], [s.key_hash for s in sessions] + [t.lookup_hash for t in tokens]
        base = user_principal(self._store, record, "token", None, ())
        live = [
            session_credential(replace(base, auth=auth_method(s.methods), session_id=s.id), s)
            for s in sessions
        ]
        live += [token_credential(replace(base, scopes=t.scopes), t) for t in tokens]
        return live, []

    def _credentials_of(self, owner: str | None) -> list[GatewayCredential]:
        """Live credentials of every owner (None), or the tokens of one service subject."""
        now = self._clock.time()
        found: list[GatewayCredential] = []
        if owner is None:
            user_ids = {s.user_id for s in self._store.list_sessions(None) if s.is_live(now)}
            user_ids |= {
                t.owner.partition(":")[2]
                for t in self._store.list_tokens(None)
                if t.owner.startswith("user:") and t.is_live(now)
            }
            for user_id in sorted(user_ids):
                found.extend(self._user_credentials(user_id)[0])
        services: dict[str, Principal | None] = {}
        for token in self._store.list_tokens(None if owner is None else owner):
            if not token.owner.startswith("service:") or not token.is_live(now):
                continue
            name = token.owner.partition(":")[2]
            if name not in services:
                try:
                    services[name] = service_principal(self._store, name, "token", ())
                except ServiceAccountNotFound:
                    services[name] = None
            principal = services[name]
            if principal is not None:
                found.append(token_credential(replace(principal, scopes=token.scopes), token))
        return found
