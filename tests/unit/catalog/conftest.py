"""Every catalog store backend for the conformance suite: memory, SQLite, PostgreSQL.

The PostgreSQL backend is marked integration; each of its tests gets a fresh schema (via
``search_path``) that is dropped afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from courtyard.catalog import CatalogStore, MemoryCatalogStore, SqlCatalogStore
from courtyard.store import Database


@pytest.fixture(
    params=["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.integration)]
)
def catalog_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CatalogStore]:
    """Each catalog store backend, empty."""
    if request.param == "memory":
        yield MemoryCatalogStore()
        return
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'courtyard.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    db = Database.open(url)
    try:
        yield SqlCatalogStore(db)
    finally:
        db.close()
