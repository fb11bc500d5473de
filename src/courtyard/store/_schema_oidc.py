"""OpenID Connect provider tables (courtyard.iam's OIDC side): clients, authorization codes,
refresh token families, revoked access tokens and signing keys. Created by migration 0004.

Secrets (client secrets, codes, refresh tokens) are stored as SHA-256 hex only; each is 256
random bits, so a fast hash is enough (no password-hashing work factor is needed).
"""

from sqlalchemy import JSON, Boolean, Column, Double, Index, String, Table, Text

from courtyard.store._schema import metadata

__all__ = [
    "oauth_clients_table",
    "oauth_codes_table",
    "oauth_families_table",
    "oauth_refresh_table",
    "revoked_jti_table",
    "signing_keys_table",
]

# Registered OAuth 2.0 clients (RFC 6749 §2); list members are JSON arrays of strings.
oauth_clients_table = Table(
    "oauth_clients",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("app", String(63), nullable=False),
    Column("name", String(255), nullable=False),
    Column("public", Boolean, nullable=False),
    Column("secret_hash", String(64), nullable=True),
    Column("redirect_uris", JSON, nullable=False),
    Column("post_logout_redirect_uris", JSON, nullable=False),
    Column("grant_types", JSON, nullable=False),
    Column("scopes", JSON, nullable=False),
    Column("audience", JSON, nullable=False),
    Column("id_token_alg", String(8), nullable=False),
    Column("created_at", Double, nullable=False),
)

# Authorization codes (RFC 6749 §4.1.2): one use, 60 s. Rows outlive their use so that a
# replayed code is recognised and the tokens it produced (``family_id``) can be revoked.
oauth_codes_table = Table(
    "oauth_codes",
    metadata,
    Column("code_hash", String(64), primary_key=True),
    Column("client_id", String(64), nullable=False),
    Column("subject", String(255), nullable=False),
    Column("session_id", String(128), nullable=True),
    Column("redirect_uri", Text, nullable=False),
    Column("scope", Text, nullable=False),
    Column("nonce", Text, nullable=True),
    Column("code_challenge", String(128), nullable=False),
    Column("auth_time", Double, nullable=True),
    Column("expires_at", Double, nullable=False),
    Column("used_at", Double, nullable=True),
    Column("family_id", String(64), nullable=True),
    Index(None, "expires_at"),
)

# One grant's tokens (RFC 9700 §4.14.2): revoking the family revokes every refresh token of
# the rotation chain and every access token (``access_jtis``: JSON [[jti, exp], ...]) issued.
oauth_families_table = Table(
    "oauth_families",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("client_id", String(64), nullable=False),
    Column("subject", String(255), nullable=False),
    Column("created_at", Double, nullable=False),
    Column("revoked_at", Double, nullable=True),
    Column("access_jtis", JSON, nullable=False),
    Index(None, "client_id"),
)

# Refresh tokens, rotated on every use; a second use of one is reuse (RFC 9700 §4.14.2).
oauth_refresh_table = Table(
    "oauth_refresh",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("family_id", String(64), nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("subject", String(255), nullable=False),
    Column("scope", Text, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("expires_at", Double, nullable=False),
    Column("used_at", Double, nullable=True),
    Column("revoked_at", Double, nullable=True),
    Index(None, "family_id"),
    Index(None, "expires_at"),
)

# Access tokens revoked before they expire (RFC 7009); the gateways get this list.
revoked_jti_table = Table(
    "revoked_jti",
    metadata,
    Column("jti", String(64), primary_key=True),
    Column("expires_at", Double, nullable=False),
    Index(None, "expires_at"),
)

# The signing key ring: one row per generation (an EC P-256 and an RSA-2048 private JWK).
# NOTE: the private keys are stored as plain JWK JSON; they are not encrypted at rest.
signing_keys_table = Table(
    "signing_keys",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("ec_jwk", Text, nullable=False),
    Column("rsa_jwk", Text, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("activated_at", Double, nullable=True),
    Column("retired_at", Double, nullable=True),
)
