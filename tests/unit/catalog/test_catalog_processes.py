"""Route uniqueness holds between processes sharing one database, not just between threads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from courtyard.catalog import Catalog, SqlCatalogStore
from courtyard.store import Database

# Each child opens the database, says "ready", waits for "go", then registers its apps:
# one contested route and capability, plus a few of its own.
CHILD = """
import asyncio, json, sys
from courtyard.catalog import Catalog, CatalogError, Manifest, SqlCatalogStore
from courtyard.store import Database

url, me = sys.argv[1], sys.argv[2]

def manifest(name, route, capability):
    return Manifest.from_document({
        "apiVersion": "courtyard.dev/v1alpha1", "kind": "Application",
        "metadata": {"name": name, "owner": "team-a", "businessOwner": "a@example.com"},
        "spec": {"run": {"command": ["app"]}, "routes": [{"path": route}],
                 "provides": [capability]},
    })

async def main():
    db = Database.open(url)
    catalog = Catalog(SqlCatalogStore(db))
    print("ready", flush=True)
    sys.stdin.readline()
    jobs = [manifest(f"{me}-contested", "/contested/", "contested")]
    jobs += [manifest(f"{me}-own-{i}", f"/{me}/{i}/", f"{me}-{i}") for i in range(5)]
    results = await asyncio.gather(*(catalog.register(m) for m in jobs), return_exceptions=True)
    outcome = {}
    for job, result in zip(jobs, results):
        if isinstance(result, CatalogError):
            outcome[job.name] = f"{type(result).__name__}:{getattr(result, 'holder', '')}"
        elif isinstance(result, BaseException):
            outcome[job.name] = repr(result)
        else:
            outcome[job.name] = "registered"
    db.close()
    print(json.dumps(outcome), flush=True)

asyncio.run(main())
"""


def run_children(url: str, count: int) -> dict[str, str]:
    """Start ``count`` children, release them together, and merge what they report."""
    children = [
        subprocess.Popen(
            [sys.executable, "-W", "error", "-c", CHILD, url, f"p{i}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(count)
    ]
    for child in children:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    outcome: dict[str, str] = {}
    for child in children:
        out, _ = child.communicate(timeout=120)
        assert child.returncode == 0
        outcome.update(json.loads(out.strip().splitlines()[-1]))
    return outcome


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'courtyard.db'}"
    return str(request.getfixturevalue("postgres_url"))


async def test_processes_race_for_one_route(url: str) -> None:
    Database.open(url).close()  # migrate once, so the race is about the catalog
    outcome = run_children(url, 4)
    contested = {name: result for name, result in outcome.items() if "contested" in name}
    winners = [name for name, result in contested.items() if result == "registered"]
    assert len(winners) == 1, contested
    assert (
        sorted(r for n, r in contested.items() if n not in winners)
        == [f"RouteTaken:{winners[0]}"] * 3
    )
    own = {name: result for name, result in outcome.items() if "own" in name}
    assert set(own.values()) == {"registered"} and len(own) == 20
    db = Database.open(url)
    try:
        apps = await Catalog(SqlCatalogStore(db)).list()
        assert {app.name for app in apps} == {*own, winners[0]}
        assert db.integrity_check() == "ok"
    finally:
        db.close()
