"""The directory's data: what callers see (users, groups, principals, sessions, tokens) and the
records the store keeps behind them (with hashes, never secrets).

Subjects are spelled ``user:<id>``, ``group:<name>`` and ``service:<name>``; claims use
``u_<hex>`` for people and ``svc:<name>`` for service accounts (contracts, "Identity").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from courtyard.contracts import IdentityClaims, claims_for_app

UserStatus = Literal["active", "disabled"]
PrincipalKind = Literal["user", "service"]
LoginStatus = Literal["ok", "totp_required", "failed", "throttled"]
ADMIN_ROLE = "platform-admin"
AUDITOR_ROLE = "auditor"


@dataclass(frozen=True)
class User:
    """A person in the directory (no credential material)."""

    id: str
    email: str
    name: str
    status: UserStatus
    created_at: float
    has_password: bool
    totp_enabled: bool


@dataclass(frozen=True)
class Group:
    """A named set of users; ``members`` are user ids, sorted."""

    name: str
    title: str
    members: tuple[str, ...]


@dataclass(frozen=True)
class RoleBinding:
    """``subject`` holds ``role`` across the platform (``app`` None) or in one app."""

    role: str
    subject: str
    app: str | None = None


@dataclass(frozen=True)
class ServiceAccount:
    """A workload identity; it authenticates with API keys only."""

    name: str
    title: str
    created_at: float


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a person or a service account, with what they may do.

    ``id`` is the claims ``sub``: ``u_<hex>`` for people, ``svc:<name>`` for services.
    ``roles`` are platform roles; ``app_roles`` maps an app to the caller's roles in it.
    ``scopes`` narrow a token; ``()`` means everything the owner may do.
    """

    kind: PrincipalKind
    id: str
    email: str
    name: str
    groups: tuple[str, ...]
    roles: tuple[str, ...]
    app_roles: Mapping[str, tuple[str, ...]]
    auth: str
    session_id: str | None
    scopes: tuple[str, ...] = ()

    def claims(self, app: str | None = None) -> IdentityClaims:
        """The identity claims asserted to ``app`` (platform roles only when ``app`` is None)."""
        identity = IdentityClaims(
            sub=self.id,
            email=self.email,
            name=self.name,
            groups=list(self.groups),
            roles=list(self.roles),
        )
        if app is None:
            return identity
        return claims_for_app(identity, self.app_roles_lists(), app)

    def app_roles_lists(self) -> dict[str, list[str]]:
        """``app_roles`` in the JSON shape of :class:`courtyard.contracts.GatewayCredential`."""
        return {app: list(roles) for app, roles in self.app_roles.items()}

    @property
    def is_admin(self) -> bool:
        return ADMIN_ROLE in self.roles

    @property
    def is_auditor(self) -> bool:
        return AUDITOR_ROLE in self.roles

    @property
    def subject(self) -> str:
        """The role-binding subject naming this caller (``user:<id>`` or ``service:<name>``)."""
        if self.kind == "service":
            return f"service:{self.id.removeprefix('svc:')}"
        return f"user:{self.id}"


@dataclass(frozen=True)
class SessionInfo:
    """A browser session as its owner and admins see it; ``id`` is a public handle, not the
    cookie. ``expires_at`` is the absolute end, ``idle_expires_at`` the end if left unused."""

    id: str
    user_id: str
    created_at: float
    last_seen: float
    expires_at: float
    idle_expires_at: float
    client: str
    user_agent: str
    methods: tuple[str, ...]


@dataclass(frozen=True)
class LoginOutcome:
    """What a sign-in step decided. ``cookie`` is the new session's cookie value (never log it);
    ``pending`` is the short-lived proof that the password step passed (``totp_required``)."""

    status: LoginStatus
    cookie: str | None = field(default=None, repr=False)
    session: SessionInfo | None = None
    pending: str | None = field(default=None, repr=False)
    retry_after: float = 0.0


@dataclass(frozen=True)
class IamConfig:
    """Sign-in settings. Timeouts follow OWASP's Session Management Cheat Sheet (idle 30 min,
    absolute 12 h by default)."""

    issuer: str = "http://127.0.0.1:8080"
    session_idle: float = 1800
    session_absolute: float = 43200
    totp_issuer: str = "Courtyard"
    cookie_secure: bool = False

    @property
    def cookie_name(self) -> str:
        """The ``__Host-`` prefix (RFC 6265bis §4.1.3.2) needs Secure, so only over HTTPS."""
        return "__Host-courtyard_session" if self.cookie_secure else "courtyard_session"


@dataclass(frozen=True)
class TokenInfo:
    """An API token as listings show it (never its secret). ``owner`` is a subject."""

    id: str
    owner: str
    name: str
    scopes: tuple[str, ...]
    created_at: float
    expires_at: float | None
    last_used_at: float | None
    revoked_at: float | None


@dataclass(frozen=True)
class UserRecord:
    """A stored user: the public fields plus credential state (hashes and TOTP bookkeeping)."""

    id: str
    email: str
    name: str
    status: UserStatus
    created_at: float
    updated_at: float
    password_hash: str | None = field(default=None, repr=False)
    totp_secret: str | None = field(default=None, repr=False)
    totp_pending: str | None = field(default=None, repr=False)
    totp_last_step: int | None = None
    recovery_codes: tuple[str, ...] = field(default=(), repr=False)

    def public(self) -> User:
        return User(
            id=self.id,
            email=self.email,
            name=self.name,
            status=self.status,
            created_at=self.created_at,
            has_password=self.password_hash is not None,
            totp_enabled=self.totp_secret is not None,
        )


@dataclass(frozen=True)
class SessionRecord:
    """A stored session: ``key_hash`` is SHA-256 hex of the cookie value."""

    id: str
    key_hash: str
    user_id: str
    created_at: float
    last_seen: float
    expires_at: float
    idle_expires_at: float
    client: str
    user_agent: str
    methods: tuple[str, ...]
    revoked_at: float | None = None

    def is_live(self, now: float) -> bool:
        """Neither revoked nor past its idle or absolute end."""
        return self.revoked_at is None and now < self.idle_expires_at and now < self.expires_at

    def info(self) -> SessionInfo:
        return SessionInfo(
            id=self.id,
            user_id=self.user_id,
            created_at=self.created_at,
            last_seen=self.last_seen,
            expires_at=self.expires_at,
            idle_expires_at=self.idle_expires_at,
            client=self.client,
            user_agent=self.user_agent,
            methods=self.methods,
        )


@dataclass(frozen=True)
class TokenRecord:
    """A stored API token: ``secret_hash`` of its secret part, ``lookup_hash`` of the whole."""

    id: str
    owner: str
    name: str
    secret_hash: str = field(repr=False)
    lookup_hash: str = field(repr=False)
    scopes: tuple[str, ...]
    created_at: float
    expires_at: float | None = None
    last_used_at: float | None = None
    revoked_at: float | None = None

    def is_live(self, now: float) -> bool:
        """Not revoked and not expired (``expires_at`` is exclusive)."""
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or now < self.expires_at

    def info(self) -> TokenInfo:
        return TokenInfo(
            id=self.id,
            owner=self.owner,
            name=self.name,
            scopes=self.scopes,
            created_at=self.created_at,
            expires_at=self.expires_at,
            last_used_at=self.last_used_at,
            revoked_at=self.revoked_at,
        )
