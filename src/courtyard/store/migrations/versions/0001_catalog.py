"""Catalog tables: apps, their numbered revisions, and the fleet-wide route and capability claims.

Revision ID: 0001
Revises:
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "apps",
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(63), nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("current_revision", sa.Integer(), nullable=False),
        sa.Column("desired_state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_apps"),
    )
    op.create_table(
        "revisions",
        sa.Column("app", sa.String(63), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("bundle_digest", sa.String(64), nullable=True),
        sa.Column("manifest", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["app"], ["apps.name"], name="fk_revisions_app_apps", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("app", "number", name="pk_revisions"),
    )
    op.create_table(
        "routes",
        sa.Column("host", sa.String(253), nullable=False),
        sa.Column("path", sa.String(1024), nullable=False),
        sa.Column("app", sa.String(63), nullable=False),
        sa.ForeignKeyConstraint(
            ["app"], ["apps.name"], name="fk_routes_app_apps", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("host", "path", name="pk_routes"),
    )
    op.create_index("ix_routes_app", "routes", ["app"])
    op.create_table(
        "capabilities",
        sa.Column("name", sa.String(253), nullable=False),
        sa.Column("app", sa.String(63), nullable=False),
        sa.ForeignKeyConstraint(
            ["app"], ["apps.name"], name="fk_capabilities_app_apps", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("name", name="pk_capabilities"),
    )
    op.create_index("ix_capabilities_app", "capabilities", ["app"])


def downgrade() -> None:
    op.drop_index("ix_capabilities_app", table_name="capabilities")
    op.drop_table("capabilities")
    op.drop_index("ix_routes_app", table_name="routes")
    op.drop_table("routes")
    op.drop_table("revisions")
    op.drop_table("apps")
