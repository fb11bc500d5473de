"""Every catalog store backend for the conformance suite: memory, SQLite, PostgreSQL.

The PostgreSQL backend is marked integration; each of its tests gets a fresh schema (via
``search_path``) that is dropped afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from backends import BACKENDS, sql_database
from courtyard.catalog import CatalogStore, MemoryCatalogStore, SqlCatalogStore


@pytest.fixture(params=BACKENDS)
def catalog_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CatalogStore]:
    """Each catalog store backend, empty."""
    if request.param == "memory":
        yield MemoryCatalogStore()
        return
    with sql_database(request, tmp_path) as db:
        yield SqlCatalogStore(db)
