"""Event bus tables (courtyard.mesh): published events and their deliveries per subscriber.
Created by migration 0005.

An event and every one of its delivery rows are written in one transaction, so a stored event
is never without its deliveries (at-least-once starts at the commit). ``seq`` orders events
as they were accepted; the CloudEvent itself is kept as the JSON text subscribers receive.
"""

from sqlalchemy import (
    BigInteger,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

from courtyard.store._schema import metadata

__all__ = ["deliveries_table", "events_table", "metadata"]

# On SQLite an INTEGER PRIMARY KEY is the rowid: events sit in the order they were accepted.
_EVENT_SEQ = BigInteger().with_variant(Integer(), "sqlite")

# One row per accepted event. ``id`` is the CloudEvent id (CloudEvents 1.0 §3.1.1): the
# publisher's own when it gave one (publishing it again is then a no-op), else a UUID.
events_table = Table(
    "events",
    metadata,
    Column("seq", _EVENT_SEQ, primary_key=True, autoincrement=True),
    Column("id", String(128), nullable=False, unique=True),
    Column("topic", String(253), nullable=False),
    Column("publisher", String(63), nullable=False),
    Column("cloudevent", Text, nullable=False),
    Column("created_at", Double, nullable=False),
    Index(None, "topic"),
)

# One row per (event, subscriber, handler). ``state`` is pending, delivered or dead; a
# pending row is due when ``next_attempt_at`` has passed (a claim pushes it forward by a
# lease, so one delivery is never sent twice at once). Times are epoch seconds.
deliveries_table = Table(
    "deliveries",
    metadata,
    Column(
        "event_id",
        String(128),
        ForeignKey("events.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("subscriber", String(63), nullable=False),
    Column("handler", String(1024), nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", Double, nullable=False),
    Column("last_attempt_at", Double, nullable=True),
    Column("last_error", String(1024), nullable=True),
    Column("delivered_at", Double, nullable=True),
    PrimaryKeyConstraint("event_id", "subscriber", "handler"),
    Index(None, "state", "next_attempt_at"),
)
