"""The platform's database: one schema for every package, migrated on open (SQLite or PostgreSQL).

Domain packages build their stores on :class:`Database` and the shared tables defined here.
"""

from courtyard.store import (  # noqa: F401  (register their tables)
    _schema_alerts,
    _schema_events,
    _schema_iam,
    _schema_oidc,
    _schema_telemetry,
)
from courtyard.store._database import Database
from courtyard.store._errors import StoreError
from courtyard.store._schema import (
    apps_table,
    capabilities_table,
    metadata,
    revisions_table,
    routes_table,
)

__all__ = [
    "Database",
    "StoreError",
    "apps_table",
    "capabilities_table",
    "metadata",
    "revisions_table",
    "routes_table",
]
