"""The store backends every conformance suite runs against: memory, SQLite and PostgreSQL.

Suites parametrize over ``BACKENDS`` and open the SQL ones with :func:`sql_database`; the
PostgreSQL case is in the integration tier and gets a fresh schema (``postgres_url``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from courtyard.store import Database

BACKENDS = ["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.integration)]


@contextlib.contextmanager
def sql_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """The migrated database of the current ``sqlite`` or ``postgresql`` parameter."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'courtyard.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    db = Database.open(url)
    try:
        yield db
    finally:
        db.close()
