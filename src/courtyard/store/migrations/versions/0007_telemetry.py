"""Telemetry minutes.

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "telemetry_minutes",
        sa.Column("app", sa.String(63), nullable=False),
        sa.Column("minute", sa.BigInteger(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.Column("latency", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("app", "minute", name="pk_telemetry_minutes"),
    )
    op.create_index("ix_telemetry_minutes_minute", "telemetry_minutes", ["minute"])


def downgrade() -> None:
    op.drop_index("ix_telemetry_minutes_minute", table_name="telemetry_minutes")
    op.drop_table("telemetry_minutes")
