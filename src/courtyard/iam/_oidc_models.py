"""The OpenID Connect provider's data: its configuration, registered clients and the records
behind codes and refresh tokens (each stored under the SHA-256 of its secret, never the secret).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

GrantType = Literal["authorization_code", "refresh_token", "client_credentials"]
IdTokenAlg = Literal["ES256", "RS256"]

GRANT_TYPES: tuple[GrantType, ...] = ("authorization_code", "refresh_token", "client_credentials")
SCOPES: tuple[str, ...] = ("openid", "profile", "email", "groups", "offline_access")
ID_TOKEN_ALGS: tuple[IdTokenAlg, ...] = ("ES256", "RS256")


@dataclass(frozen=True)
class OidcConfig:
    """Lifetimes (seconds) and names of the provider; read once at start.

    ``propagation_delay`` is how long a new signing key is published before it signs: at
    least the JWKS ``Cache-Control: max-age`` so every verifier has fetched it (0 in tests).
    """

    issuer: str
    access_token_ttl: float = 600
    id_token_ttl: float = 600
    refresh_ttl: float = 30 * 86400
    code_ttl: float = 60
    propagation_delay: float = 300
    jwks_max_age: int = 300
    session_cookie: str = "courtyard_session"
    login_path: str = "/login"

    @property
    def max_token_lifetime(self) -> float:
        """The longest a JWT we sign stays valid (gateway assertions live at most 60 s)."""
        return max(self.access_token_ttl, self.id_token_ttl, 60.0)


@dataclass(frozen=True)
class ClientInfo:
    """A registered OAuth client as admins see it (the secret is never kept, only its hash)."""

    client_id: str
    app: str
    name: str
    public: bool
    redirect_uris: tuple[str, ...]
    post_logout_redirect_uris: tuple[str, ...]
    grant_types: tuple[GrantType, ...]
    scopes: tuple[str, ...]
    audience: tuple[str, ...]
    id_token_alg: IdTokenAlg
    created_at: float


@dataclass(frozen=True)
class ClientRecord:
    """A client as stored: its info and the SHA-256 (hex) of its secret (None when public)."""

    info: ClientInfo
    secret_hash: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class CodeRecord:
    """An authorization code (RFC 6749 §4.1.2) as stored under ``code_hash``."""

    code_hash: str
    client_id: str
    subject: str
    session_id: str | None
    redirect_uri: str
    scope: tuple[str, ...]
    nonce: str | None
    code_challenge: str
    auth_time: float | None
    expires_at: float
    used_at: float | None = None
    family_id: str | None = None


@dataclass(frozen=True)
class RefreshRecord:
    """A refresh token of a rotation family (RFC 9700 §4.14.2) as stored under its hash."""

    token_hash: str
    family_id: str
    client_id: str
    subject: str
    scope: tuple[str, ...]
    created_at: float
    expires_at: float
    used_at: float | None = None
    revoked_at: float | None = None


@dataclass(frozen=True)
class FamilyRecord:
    """Every token one authorization grant produced, so they can be revoked together."""

    id: str
    client_id: str
    subject: str
    created_at: float
    revoked_at: float | None = None
    access_jtis: tuple[tuple[str, float], ...] = ()  # (jti, exp) of each access token issued


def secret_hash(secret: str) -> str:
    """SHA-256 hex of a 256-bit random secret (codes, refresh tokens, client secrets)."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()
