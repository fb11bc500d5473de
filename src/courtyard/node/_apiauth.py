"""Who calls the control-plane API, and whether they may: bearer credentials in, a Principal out.

The API takes bearer credentials only (RFC 6750 §2.1), never the portal's session cookie, so a
page on another site cannot ride a signed-in browser into the API (OWASP CSRF Cheat Sheet).
"""

from __future__ import annotations

import dataclasses
import hmac
from types import MappingProxyType
from typing import Any, Protocol

from courtyard.contracts import GATEWAY_AUDIENCE
from courtyard.iam import DEFAULT_TOKEN_PREFIX, Principal, User

# The node's own admin token (<data-dir>/admin.token): the CLI on this machine uses it.
NODE_ADMIN = Principal(
    kind="service",
    id="svc:node-admin",
    email="",
    name="Node admin",
    groups=(),
    roles=("platform-admin",),
    app_roles=MappingProxyType({}),
    auth="admin-token",
    session_id=None,
)

_READERS = ("platform-admin", "auditor")

# The fleet's state and signals: any signed-in caller reads them, a platform admin changes them.
_FLEET = (
    "/api/v1/apps",
    "/api/v1/schema",
    "/api/v1/node",
    "/api/v1/graph",
    "/api/v1/health",
    "/api/v1/traces",
    "/api/v1/alerts",
    "/api/v1/silences",
)

# What a scoped API token or an OAuth access token may reach: an area and read or write
# ("write" includes "read"). An API token without scopes may do all its owner may; an OAuth
# access token needs an API scope explicitly (OWASP ASVS V8.1: least privilege), so the
# openid/profile tokens an app's client holds never reach the platform API.
API_SCOPES = ("apps:read", "apps:write", "audit:read", "audit:write", "iam:read", "iam:write")


class TokenUsers(Protocol):
    """What the authenticator needs of IAM (courtyard.iam.Iam)."""

    async def authenticate_token(self, presented: str) -> Principal | None: ...

    async def principal_of(self, ref: str) -> Principal: ...

    async def get_user(self, ref: str) -> User: ...


class AccessTokens(Protocol):
    """What the authenticator needs of the OIDC provider."""

    async def access_claims(self, token: str) -> dict[str, Any] | None: ...


class ApiAuthenticator:
    """Turns an ``Authorization`` header into a Principal, or None (then the API says 401)."""

    def __init__(
        self,
        admin_token: str,
        users: TokenUsers | None = None,
        tokens: AccessTokens | None = None,
    ) -> None:
        self._admin = admin_token.encode()
        self._users = users
        self._tokens = tokens

    async def authenticate(self, authorization: str) -> Principal | None:
        scheme, _, credential = authorization.partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            return None
        # Constant-time comparison: no timing oracle on the token (OWASP ASVS V2.9.1).
        if hmac.compare_digest(credential.encode(), self._admin):
            return NODE_ADMIN
        users = self._users
        if users is None:
            return None
        if credential.startswith(DEFAULT_TOKEN_PREFIX + "_"):
            return await users.authenticate_token(credential)
        if self._tokens is None:
            return None
        claims = await self._tokens.access_claims(credential)
        if claims is None:
            return None
        return await _token_principal(users, claims)


async def _token_principal(users: TokenUsers, claims: dict[str, Any]) -> Principal | None:
    """The caller an OAuth access token speaks for (RFC 9068 §2.2), narrowed to its scopes."""
    aud = claims.get("aud")
    if GATEWAY_AUDIENCE not in (aud if isinstance(aud, list) else [aud]):
        return None  # issued for one app only: not for the platform API (RFC 9068 §4)
    subject = str(claims.get("sub", ""))
    scopes = tuple(str(claims.get("scope", "")).split())
    if subject.startswith("svc:"):
        # A client acting for itself (client credentials): no directory entry, no roles.
        return Principal(
            kind="service",
            id=subject,
            email="",
            name=str(claims.get("client_id", subject)),
            groups=(),
            roles=(),
            app_roles=MappingProxyType({}),
            auth="oidc",
            session_id=None,
            scopes=scopes,
        )
    try:
        if (await users.get_user(subject)).status != "active":
            return None  # a disabled user's token stops with their sessions and API tokens
        principal = await users.principal_of(subject)
    except Exception:  # a deleted user's token must fail closed, whatever IAM raises
        return None
    return dataclasses.replace(principal, auth="oidc", scopes=scopes)


def permits(principal: Principal, method: str, path: str) -> bool:
    """Whether ``principal`` may make this call to the apps, catalog, audit or node API.

    The directory, clients and keys routers check their own callers (a user may manage their
    own tokens and sessions); everything else is decided here: reading the fleet needs any
    signed-in caller, the audit trail a platform admin or auditor, changes a platform admin.
    """
    reading = method in ("GET", "HEAD")
    if not _scopes_allow(principal, reading, path):
        return False
    if path.startswith("/api/v1/audit"):
        return principal.is_admin or (reading and any(r in principal.roles for r in _READERS))
    if path.startswith(_FLEET):
        return reading or principal.is_admin
    return True


def _scopes_allow(principal: Principal, reading: bool, path: str) -> bool:
    scopes = principal.scopes
    if (not scopes and principal.auth != "oidc") or path == "/api/v1/me":
        return True  # who-am-I needs no scope
    if path.startswith("/api/v1/audit"):
        area = "audit"
    elif path.startswith(_FLEET):
        area = "apps"
    else:
        area = "iam"
    return f"{area}:write" in scopes or (reading and f"{area}:read" in scopes)
