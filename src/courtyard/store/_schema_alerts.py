"""Alert silences (courtyard.telemetry): who muted which alerts, until when, and why.
Created by migration 0006.

A silence matches an app's alerts, optionally narrowed to one SLO and one severity; it is
deleted when it is expired by hand or has ended (the audit trail keeps its history).
"""

from sqlalchemy import Column, Double, Index, String, Table

from courtyard.store._schema import metadata

__all__ = ["alert_silences_table", "metadata"]

alert_silences_table = Table(
    "alert_silences",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("app", String(63), nullable=False),
    Column("slo", String(63), nullable=True),
    Column("severity", String(16), nullable=True),
    Column("starts_at", Double, nullable=False),
    Column("ends_at", Double, nullable=False),
    Column("comment", String(1024), nullable=False),
    Column("created_by", String(255), nullable=False),
    Index(None, "ends_at"),
)
