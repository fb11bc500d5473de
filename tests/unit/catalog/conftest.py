"""Every catalog store backend for the conformance suite: memory, SQLite, PostgreSQL.

The PostgreSQL backend is marked integration; each of its tests gets a fresh schema (via
``search_path``) that is dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from courtyard.catalog import CatalogStore, MemoryCatalogStore, SqlCatalogStore
from courtyard.store import Database

POSTGRES_URL = os.environ.get(
    "COURTYARD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture
def postgres_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A URL whose connections live in a new, empty schema of the test PostgreSQL."""
    plain = POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://")
    try:
        admin = psycopg.connect(plain, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        markers = str(request.config.getoption("-m") or "")
        if "integration" in markers and "not integration" not in markers:
            pytest.fail(f"PostgreSQL is not reachable at {plain}: {exc}")
        pytest.skip(f"PostgreSQL is not reachable at {plain}")
    schema = f"courtyard_test_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


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
