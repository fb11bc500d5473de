"""Identity tables (courtyard.iam): users, groups, role bindings, service accounts, sessions
and API tokens. Created by migration 0003.

No secret is stored in the clear: passwords are argon2id hashes, session cookies and API
tokens are SHA-256 hex (256 random bits each, so a fast hash is enough), recovery codes are
salted SHA-256. E-mails are stored lower-cased, so the unique index is case-insensitive.
"""

from sqlalchemy import JSON, BigInteger, Column, Double, ForeignKey, Index, String, Table, Text

from courtyard.store._schema import metadata

__all__ = [
    "api_tokens_table",
    "group_members_table",
    "groups_table",
    "role_bindings_table",
    "service_accounts_table",
    "sessions_table",
    "users_table",
]

# People. ``password_hash`` is NULL for accounts that sign in only another way; the TOTP
# columns hold the enrolled secret, a secret awaiting confirmation, the last accepted time
# step (RFC 6238 §5.2: each step is accepted once) and the unspent recovery code hashes.
users_table = Table(
    "users",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("email", String(254), nullable=False, unique=True),
    Column("name", String(255), nullable=False),
    Column("status", String(16), nullable=False),
    Column("password_hash", Text, nullable=True),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    Column("totp_secret", String(128), nullable=True),
    Column("totp_pending", String(128), nullable=True),
    Column("totp_last_step", BigInteger, nullable=True),
    Column("recovery_codes", JSON, nullable=False),
)

groups_table = Table(
    "groups",
    metadata,
    Column("name", String(63), primary_key=True),
    Column("title", String(255), nullable=False),
    Column("created_at", Double, nullable=False),
)

group_members_table = Table(
    "group_members",
    metadata,
    Column(
        "group_name",
        String(63),
        ForeignKey("groups.name", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("user_id", String(32), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Index(None, "user_id"),
)

# Who holds which role. ``app`` is "" (not NULL) for platform roles, so the primary key
# also makes global bindings unique (NULLs never collide in a UNIQUE index).
role_bindings_table = Table(
    "role_bindings",
    metadata,
    Column("role", String(32), primary_key=True),
    Column("subject", String(255), primary_key=True),
    Column("app", String(63), primary_key=True),
    Column("created_at", Double, nullable=False),
    Index(None, "subject"),
)

service_accounts_table = Table(
    "service_accounts",
    metadata,
    Column("name", String(63), primary_key=True),
    Column("title", String(255), nullable=False),
    Column("created_at", Double, nullable=False),
)

# Server-side browser sessions (OWASP Session Management Cheat Sheet). ``id`` is the public
# handle shown in listings; ``key_hash`` is SHA-256 of the cookie value, which is never stored.
sessions_table = Table(
    "sessions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("user_id", String(32), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", Double, nullable=False),
    Column("last_seen", Double, nullable=False),
    Column("expires_at", Double, nullable=False),
    Column("idle_expires_at", Double, nullable=False),
    Column("client", String(255), nullable=False),
    Column("user_agent", String(512), nullable=False),
    Column("methods", JSON, nullable=False),
    Column("revoked_at", Double, nullable=True),
    Index(None, "user_id"),
)

# Personal access tokens (owner "user:<id>") and API keys (owner "service:<name>").
# ``secret_hash`` is SHA-256 of the secret part; ``lookup_hash`` SHA-256 of the whole token,
# the key gateways hold.
api_tokens_table = Table(
    "api_tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("owner", String(255), nullable=False),
    Column("name", String(255), nullable=False),
    Column("secret_hash", String(64), nullable=False),
    Column("lookup_hash", String(64), nullable=False, unique=True),
    Column("scopes", JSON, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("expires_at", Double, nullable=True),
    Column("last_used_at", Double, nullable=True),
    Column("revoked_at", Double, nullable=True),
    Index(None, "owner"),
)
