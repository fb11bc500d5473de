"""Telemetry minutes (courtyard.telemetry): what the gateway and the mesh counted per app and
minute, kept for the longest SLO window. Created by migration 0007.

``minute`` is ``floor(unix seconds / 60)``. ``latency`` is the minute's whole histogram (a
JSON list, one count per ``LATENCY_BUCKETS`` bound then +Inf), so latency SLOs can be
recounted after their threshold changes.
"""

from sqlalchemy import JSON, BigInteger, Column, Index, PrimaryKeyConstraint, String, Table

from courtyard.store._schema import metadata

__all__ = ["metadata", "telemetry_minutes_table"]

telemetry_minutes_table = Table(
    "telemetry_minutes",
    metadata,
    Column("app", String(63), nullable=False),
    Column("minute", BigInteger, nullable=False),
    Column("total", BigInteger, nullable=False),
    Column("errors", BigInteger, nullable=False),
    Column("latency", JSON, nullable=False),
    PrimaryKeyConstraint("app", "minute"),
    Index(None, "minute"),  # pruning past the longest window
)
