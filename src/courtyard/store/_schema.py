"""Every platform table in one ``MetaData``, so domain packages share one schema.

Migrations in ``migrations/versions`` create exactly these tables; a test compares the two.
Timestamps are seconds since the epoch (``Double``) so SQLite and PostgreSQL agree exactly.
"""

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

# Deterministic constraint names, so later migrations can drop or alter them on both dialects.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# One row per app in the catalog; the manifest lives in its current revision.
apps_table = Table(
    "apps",
    metadata,
    Column("name", String(63), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("owner", String(63), nullable=False),
    Column("stage", String(16), nullable=False),
    Column("current_revision", Integer, nullable=False),
    Column("desired_state", String(16), nullable=False),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
)

# Every deployed revision of an app, numbered 1, 2, 3... per app.
revisions_table = Table(
    "revisions",
    metadata,
    Column("app", String(63), ForeignKey("apps.name", ondelete="CASCADE"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("digest", String(64), nullable=False),
    Column("bundle_digest", String(64), nullable=True),
    Column("manifest", JSON, nullable=False),
    Column("created_at", Double, nullable=False),
    PrimaryKeyConstraint("app", "number"),
)

# The routes of each app's current revision. The primary key makes (host, path) fleet-wide
# unique; host is "" (not NULL) for "any host" because NULLs never collide in a UNIQUE index.
routes_table = Table(
    "routes",
    metadata,
    Column("host", String(253), nullable=False),
    Column("path", String(1024), nullable=False),
    Column("app", String(63), ForeignKey("apps.name", ondelete="CASCADE"), nullable=False),
    PrimaryKeyConstraint("host", "path"),
    Index(None, "app"),
)

# The capabilities of each app's current revision: "two services cannot do the same thing".
capabilities_table = Table(
    "capabilities",
    metadata,
    Column("name", String(253), primary_key=True),
    Column("app", String(63), ForeignKey("apps.name", ondelete="CASCADE"), nullable=False),
    Index(None, "app"),
)

# On SQLite an INTEGER PRIMARY KEY is the rowid itself: entries sit in seq order, no extra index.
_AUDIT_SEQ = BigInteger().with_variant(Integer(), "sqlite")

# The audit trail (courtyard.audit), append-only: one row per entry, numbered 1, 2, 3...
# ``details`` holds the entry's details as RFC 8785 canonical JSON text, and the three hashes
# are lowercase hex. The audit package reads these columns without importing this module.
audit_entries_table = Table(
    "audit_entries",
    metadata,
    Column("seq", _AUDIT_SEQ, primary_key=True, autoincrement=False),
    Column("time_us", BigInteger, nullable=False),
    Column("actor_kind", String(16), nullable=False),
    Column("actor_id", String(255), nullable=False),
    Column("actor_auth", String(64), nullable=True),
    Column("action", String(128), nullable=False),
    Column("target", String(1024), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("reason", String(1024), nullable=True),
    Column("request_id", String(128), nullable=True),
    Column("trace_id", String(128), nullable=True),
    Column("details", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("entry_hash", String(64), nullable=False),
    Column("leaf_hash", String(64), nullable=False),
    # Only indexes whose inserts stay local (time, a few dozen actions): an index on a
    # many-valued column (actor, target) dirties a page per entry and costs a third of the
    # group-commit throughput (benchmarks/audit.py); those filters read in seq order.
    Index(None, "time_us"),
    Index(None, "action"),
)

# Signed checkpoints of the audit trail's Merkle tree (RFC 6962), one per tree size.
# ``frontier`` is the compact range at that size (JSON list of hex), to resume appending.
audit_checkpoints_table = Table(
    "audit_checkpoints",
    metadata,
    Column("tree_size", BigInteger, primary_key=True, autoincrement=False),
    Column("time_us", BigInteger, nullable=False),
    Column("root", String(64), nullable=False),
    Column("entry_hash", String(64), nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("signature", String(128), nullable=False),
    Column("frontier", Text, nullable=False),
)

# Hashes of complete Merkle subtrees (level, index), kept so inclusion proofs need neither
# every leaf nor the archived entries.
audit_nodes_table = Table(
    "audit_nodes",
    metadata,
    Column("level", Integer, nullable=False),
    Column("idx", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
    PrimaryKeyConstraint("level", "idx"),
)

# Segments of the audit trail moved to gzip files by retention, oldest first.
audit_archives_table = Table(
    "audit_archives",
    metadata,
    Column("first_seq", BigInteger, primary_key=True, autoincrement=False),
    Column("last_seq", BigInteger, nullable=False),
    Column("file", String(255), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("created_us", BigInteger, nullable=False),
)
