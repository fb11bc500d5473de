"""Who is calling: the identity claims the platform asserts to apps, and the access rules
that admit an identity to an app (DESIGN.md, "Identity to apps").

Pure and stdlib only: the gateway evaluates these rules on the hot path, the portal uses the
same function to list the apps a user may open, so the two can never disagree.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

# Roles bound per app (the assertion to an app carries the caller's roles in that app).
APP_ROLES: tuple[str, ...] = ("owner", "developer", "viewer")
# Roles that hold across the platform.
PLATFORM_ROLES: tuple[str, ...] = ("platform-admin", "auditor")
# The audience every access token for apps behind the gateway carries (besides any app name).
GATEWAY_AUDIENCE = "courtyard"


class IdentityClaims(TypedDict):
    """The person or service behind a request, as the ``Courtyard-Identity`` JWT states it.

    ``roles`` holds the platform roles plus the caller's roles in the app the claims are for.
    """

    sub: str  # stable id: "u_..." for people, "svc:<name>" for service accounts and clients
    email: str  # "" for services
    name: str
    groups: list[str]
    roles: list[str]


class AccessPolicy(TypedDict):
    """Who may open an app, from its manifest's ``access`` section (default: nobody)."""

    public: bool  # everyone, signed in or not; the gateway asserts an identity when it has one
    allow: list[str]  # "user:<email or id>", "group:<name>", "role:<name>"


class GatewayAuth(TypedDict):
    """What the gateway needs to authenticate callers and assert identities."""

    issuer: str  # the platform's URL: `iss` of every token and assertion it signs
    login_path: str  # where a browser without a session is sent ("/login")
    session_cookie: str  # the session cookie's name
    jwks: dict[str, Any]  # the public JWKS ({"keys": [...]}): bearer access tokens verify here
    signing_key: dict[str, Any]  # private JWK (with "kid" and "alg") for Courtyard-Identity
    assertion_ttl: int  # seconds an assertion lives (at most 60)


class GatewayCredential(TypedDict):
    """A server-side credential the gateway accepts: a browser session or an API token.

    The gateway never holds the secret itself, only ``key`` = SHA-256 (hex) of the exact
    string the client presents (the cookie value, or the whole ``cy_pat_...`` token).
    """

    key: str
    kind: Literal["session", "token", "workload"]  # workload: an app's mesh credential
    identity: IdentityClaims  # roles: platform roles only
    app_roles: dict[str, list[str]]  # app name -> roles in that app
    expires_at: float  # absolute end, seconds since the epoch
    scopes: NotRequired[list[str]]  # tokens only
    app: NotRequired[str]  # workload credentials only: the app it speaks for


class AccessDenial(TypedDict):
    """One refused request, reported by a gateway worker so the control plane audits it."""

    app: str
    status: int  # 401 (bad credential) or 403 (no rule admits the caller)
    reason: str  # the rule or check that refused, e.g. "no allow rule admits u_1", "expired"
    subject: str  # `sub`, or "-" when unauthenticated
    method: str
    path: str
    request_id: str
    client: str  # client address


def claims_for_app(
    identity: IdentityClaims, app_roles: dict[str, list[str]], app: str
) -> IdentityClaims:
    """``identity`` as asserted to ``app``: its platform roles plus its roles in that app."""
    extra = app_roles.get(app)
    if not extra:
        return identity
    roles = list(identity["roles"])
    roles.extend(role for role in extra if role not in roles)
    return IdentityClaims(
        sub=identity["sub"],
        email=identity["email"],
        name=identity["name"],
        groups=identity["groups"],
        roles=roles,
    )


def admitting_rule(policy: AccessPolicy, claims: IdentityClaims | None) -> str | None:
    """The rule that admits ``claims`` to the app, or None: default deny.

    ``claims`` must already be for this app (see :func:`claims_for_app`): a role the caller
    holds in the app (owner, developer, viewer) admits it too.
    """
    if policy["public"]:
        return "public"
    if claims is None:
        return None
    for entry in policy["allow"]:
        kind, _, value = entry.partition(":")
        if kind == "user":
            if value == claims["sub"] or (claims["email"] and value == claims["email"]):
                return entry
        elif kind == "group":
            if value in claims["groups"]:
                return entry
        elif kind == "role" and value in claims["roles"]:
            return entry
    for role in APP_ROLES:
        if role in claims["roles"]:
            return f"app-role:{role}"
    return None


def safe_next(value: str | None, default: str = "/") -> str:
    """A same-origin relative path to return to after sign-in, or ``default``.

    Open-redirect defence (OWASP Unvalidated Redirects and Forwards Cheat Sheet): only a path
    that starts with one "/" and names no scheme or authority in any spelling browsers accept
    (``//host``, ``/\\host``, ``https:host``, control characters) is kept.
    """
    if not value or len(value) > 2048:
        return default
    if not value.startswith("/") or value.startswith(("//", "/\\")):
        return default
    if any(ord(ch) < 0x20 or ch in "\\\x7f" for ch in value):
        return default
    # Browsers drop tabs and newlines and treat "\" as "/"; "%2F%2F" or "%5C" at the start
    # could be decoded by a later hop into "//".
    head = value[:4].lower()
    if head.startswith(("/%2f", "/%5c")):
        return default
    return value
