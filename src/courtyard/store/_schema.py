"""Every platform table in one ``MetaData``, so domain packages share one schema.

Migrations in ``migrations/versions`` create exactly these tables; a test compares the two.
Timestamps are seconds since the epoch (``Double``) so SQLite and PostgreSQL agree exactly.
"""

from sqlalchemy import (
    JSON,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
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
