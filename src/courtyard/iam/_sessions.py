"""Server-side sessions and the credentials gateways hold: pure decisions over records.

Following the OWASP Session Management Cheat Sheet: a fresh 256-bit identifier at every
sign-in (no session fixation), idle and absolute timeouts enforced on the server, and only a
hash of the cookie stored, so a database dump holds no live session.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from courtyard.contracts import GatewayCredential
from courtyard.iam._models import IamConfig, Principal, RoleBinding, SessionRecord, TokenRecord

# Writes of last_seen / last_used_at are coalesced: at most one per credential per minute.
TOUCH_INTERVAL = 60.0
# Credentials without an end still need an ``expires_at`` in the gateway's table.
NEVER = 253_402_300_799.0  # 9999-12-31T23:59:59Z


def secret_key(secret: str) -> str:
    """SHA-256 hex of a presented secret (a cookie value or a whole API token)."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_session(
    user_id: str,
    now: float,
    config: IamConfig,
    *,
    client: str,
    user_agent: str,
    methods: tuple[str, ...],
) -> tuple[str, SessionRecord]:
    """A new session: ``(cookie value, record)``; the record holds only the cookie's hash."""
    cookie = secrets.token_urlsafe(32)
    expires_at = now + config.session_absolute
    record = SessionRecord(
        id=f"s_{secrets.token_hex(8)}",
        key_hash=secret_key(cookie),
        user_id=user_id,
        created_at=now,
        last_seen=now,
        expires_at=expires_at,
        idle_expires_at=min(now + config.session_idle, expires_at),
        client=client[:255],
        user_agent=user_agent[:512],
        methods=methods,
    )
    return cookie, record


def touched(record: SessionRecord, now: float, idle: float) -> tuple[float, float] | None:
    """The new ``(last_seen, idle_expires_at)`` after use at ``now``, or None to skip the write.

    A session already past its idle end is not revived: the sweep ends it.
    """
    if not record.is_live(now) or now - record.last_seen < TOUCH_INTERVAL:
        return None
    return now, min(now + idle, record.expires_at)


def auth_method(methods: Iterable[str]) -> str:
    """``Principal.auth`` for a session signed in with ``methods``."""
    return "password+totp" if "totp" in methods else "password"


def roles_from(
    bindings: Iterable[RoleBinding],
) -> tuple[tuple[str, ...], dict[str, tuple[str, ...]]]:
    """(platform roles, app -> roles) held through ``bindings``, each sorted and unique."""
    platform: set[str] = set()
    per_app: dict[str, set[str]] = {}
    for binding in bindings:
        if binding.app:
            per_app.setdefault(binding.app, set()).add(binding.role)
        else:
            platform.add(binding.role)
    return tuple(sorted(platform)), {app: tuple(sorted(r)) for app, r in sorted(per_app.items())}


def session_credential(principal: Principal, record: SessionRecord) -> GatewayCredential:
    """The gateway's entry for a session; it expires at the absolute end (idle is swept)."""
    return GatewayCredential(
        key=record.key_hash,
        kind="session",
        identity=principal.claims(),
        app_roles=principal.app_roles_lists(),
        expires_at=record.expires_at,
    )


def token_credential(principal: Principal, record: TokenRecord) -> GatewayCredential:
    """The gateway's entry for an API token, with its scopes."""
    return GatewayCredential(
        key=record.lookup_hash,
        kind="token",
        identity=principal.claims(),
        app_roles=principal.app_roles_lists(),
        expires_at=record.expires_at if record.expires_at is not None else NEVER,
        scopes=list(record.scopes),
    )


@dataclass
class PendingSignIn:
    """A password step that passed and awaits the second factor (kept in memory only)."""

    user_id: str
    account: str
    expires_at: float  # monotonic clock
    failures: int = 0
