"""Fixtures every test package shares: a fresh PostgreSQL schema for the integration tier."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest

POSTGRES_URL = os.environ.get(
    "COURTYARD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture
def postgres_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A URL whose connections live in a new, empty schema of the test PostgreSQL.

    Skips when PostgreSQL is down in the default tier; fails in the integration tier, where
    a missing server is an error, not a reason to pass.
    """
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
