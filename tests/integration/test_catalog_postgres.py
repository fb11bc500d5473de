"""The platform database and the catalog on the machine's PostgreSQL.

The catalog store's behaviour on PostgreSQL is covered by the conformance suite in
tests/unit/catalog (its ``postgresql`` parameter is marked integration); this file covers what
only PostgreSQL has: schema-per-test isolation, concurrent migrators, several engines at once.
"""

from __future__ import annotations

import asyncio
import threading

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from courtyard.catalog import Catalog, Manifest, RouteTaken, SqlCatalogStore
from courtyard.store import Database, metadata

pytestmark = pytest.mark.integration


@pytest.fixture
def url(postgres_url: str) -> str:
    """This module's tests take the shared fresh-schema URL as ``url``."""
    return postgres_url


def manifest(name: str, route: str) -> Manifest:
    return Manifest.from_document(
        {
            "apiVersion": "courtyard.dev/v1alpha1",
            "kind": "Application",
            "metadata": {"name": name, "owner": "team-a", "businessOwner": "a@example.com"},
            "spec": {"run": {"command": ["app"]}, "routes": [{"path": route}]},
        }
    )


def test_open_migrates_and_reopen_is_idempotent(url: str) -> None:
    for _ in range(2):
        db = Database.open(url)
        try:
            assert db.dialect == "postgresql"
            assert db.integrity_check() == "ok"
            with db.read() as connection:
                assert connection.execute(
                    text("SELECT version_num FROM alembic_version")
                ).all() == [(Database.schema_head(),)]
                assert compare_metadata(MigrationContext.configure(connection), metadata) == []
        finally:
            db.close()


def test_concurrent_openers_migrate_once(url: str) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def open_and_close() -> None:
        try:
            start.wait()
            Database.open(url).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_and_close) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


async def test_two_engines_race_for_routes(url: str) -> None:
    """Two Database handles stand in for two control-plane replicas sharing PostgreSQL."""
    first, second = Database.open(url), Database.open(url)
    try:
        catalogs = [Catalog(SqlCatalogStore(first)), Catalog(SqlCatalogStore(second))]
        results = await asyncio.gather(
            *(catalogs[i % 2].register(manifest(f"app-{i:02d}", "/shared/")) for i in range(50)),
            return_exceptions=True,
        )
        winners = [r for r in results if not isinstance(r, BaseException)]
        assert len(winners) == 1
        assert all(isinstance(r, RouteTaken) for r in results if r not in winners)
        assert [app.name for app in await catalogs[1].list()] == [winners[0].app.name]
    finally:
        first.close()
        second.close()
