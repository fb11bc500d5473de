"""Event bus tables: events and their deliveries per subscriber.

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite: INTEGER PRIMARY KEY makes seq the rowid (events stored in the order accepted).
_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("seq", _SEQ, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("topic", sa.String(253), nullable=False),
        sa.Column("publisher", sa.String(63), nullable=False),
        sa.Column("cloudevent", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_events"),
        sa.UniqueConstraint("id", name="uq_events_id"),
    )
    op.create_index("ix_events_topic", "events", ["topic"])
    op.create_table(
        "deliveries",
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("subscriber", sa.String(63), nullable=False),
        sa.Column("handler", sa.String(1024), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.Double(), nullable=False),
        sa.Column("last_attempt_at", sa.Double(), nullable=True),
        sa.Column("last_error", sa.String(1024), nullable=True),
        sa.Column("delivered_at", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["events.id"],
            name="fk_deliveries_event_id_events",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("event_id", "subscriber", "handler", name="pk_deliveries"),
    )
    op.create_index(
        "ix_deliveries_state_next_attempt_at", "deliveries", ["state", "next_attempt_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_state_next_attempt_at", table_name="deliveries")
    op.drop_table("deliveries")
    op.drop_index("ix_events_topic", table_name="events")
    op.drop_table("events")
