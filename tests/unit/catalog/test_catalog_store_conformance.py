"""One behaviour for every catalog store: memory, SQLite and (integration) PostgreSQL.

Each test drives the store through :class:`Catalog`, the way the control plane uses it.
"""

from __future__ import annotations

import asyncio

import pytest

from courtyard.catalog import (
    AppNotFound,
    CapabilityTaken,
    Catalog,
    CatalogStore,
    Manifest,
    RevisionNotFound,
    RouteTaken,
)
from courtyard.core import FakeClock

BUNDLE_A = "a" * 64
BUNDLE_B = "b" * 64


def manifest(
    name: str,
    *,
    routes: list[str] | None = None,
    hosts: dict[str, str] | None = None,
    provides: list[str] | None = None,
    kind: str = "Application",
    replicas: int = 1,
    owner: str = "team-a",
) -> Manifest:
    """A small valid manifest; ``routes`` default to ``/apps/<name>/``."""
    paths = routes if routes is not None else [f"/apps/{name}/"]
    route_items = [{"path": path} for path in paths]
    for path, host in (hosts or {}).items():
        route_items.append({"path": path, "host": host})
    spec: dict[str, object] = {"provides": provides or []}
    if kind != "Interface":
        spec["run"] = {"command": ["python", "app.py", "${PORT}"], "replicas": replicas}
        spec["routes"] = route_items
    document = {
        "apiVersion": "courtyard.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "owner": owner, "businessOwner": "owner@example.com"},
        "spec": spec,
    }
    return Manifest.from_document(document)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=1_700_000_000.0)


@pytest.fixture
def catalog(catalog_store: CatalogStore, clock: FakeClock) -> Catalog:
    return Catalog(catalog_store, clock=clock)


async def snapshot(catalog: Catalog) -> list[tuple[object, ...]]:
    """Everything a caller can read, to show that a refused change wrote nothing."""
    state: list[tuple[object, ...]] = []
    for app in await catalog.list():
        state.append((app, tuple(await catalog.revisions(app.name))))
    return state


async def test_register_creates_revision_one(catalog: Catalog, clock: FakeClock) -> None:
    registration = await catalog.register(manifest("notes", provides=["note-taking"]))
    assert registration.created
    app, revision = registration.app, registration.revision
    assert (app.name, app.kind, app.owner, app.stage) == (
        "notes",
        "Application",
        "team-a",
        "prototype",
    )
    assert (app.current_revision, app.desired_state) == (1, "running")
    assert app.created_at == app.updated_at == clock.time()
    assert (revision.app, revision.number, revision.bundle_digest) == ("notes", 1, None)
    assert len(revision.digest) == 64
    assert await catalog.get("notes") == app
    assert await catalog.revisions("notes") == [revision]
    assert await catalog.revision("notes", 1) == revision


async def test_same_digest_twice_creates_nothing(catalog: Catalog, clock: FakeClock) -> None:
    first = await catalog.register(manifest("notes"), BUNDLE_A)
    await clock.advance(10)
    again = await catalog.register(manifest("notes"), BUNDLE_A)
    assert not again.created
    assert again.revision == first.revision
    assert again.app == first.app
    assert len(await catalog.revisions("notes")) == 1


async def test_changed_manifest_or_bundle_makes_numbered_revisions(
    catalog: Catalog, clock: FakeClock
) -> None:
    one = await catalog.register(manifest("notes"), BUNDLE_A)
    await clock.advance(5)
    two = await catalog.register(manifest("notes", replicas=2), BUNDLE_A)
    await clock.advance(5)
    three = await catalog.register(manifest("notes", replicas=2), BUNDLE_B)
    await clock.advance(5)
    four = await catalog.register(manifest("notes", replicas=2))
    numbers = [r.revision.number for r in (one, two, three, four)]
    assert numbers == [1, 2, 3, 4]
    assert all(r.created for r in (one, two, three, four))
    assert len({r.revision.digest for r in (one, two, three, four)}) == 4
    app = await catalog.get("notes")
    assert app.current_revision == 4
    assert app.created_at == 1_700_000_000.0
    assert app.updated_at == 1_700_000_015.0
    assert app.manifest.spec.run is not None and app.manifest.spec.run.replicas == 2
    assert [r.number for r in await catalog.revisions("notes")] == [1, 2, 3, 4]
    assert (await catalog.revision("notes", 3)).bundle_digest == BUNDLE_B


async def test_stored_manifest_round_trips(catalog: Catalog) -> None:
    original = manifest("notes", provides=["a", "b"], hosts={"/": "notes.example.com"})
    await catalog.register(original)
    assert (await catalog.get("notes")).manifest == original
    assert (await catalog.revision("notes", 1)).manifest == original


async def test_missing_app_and_revision(catalog: Catalog) -> None:
    with pytest.raises(AppNotFound, match="nope"):
        await catalog.get("nope")
    with pytest.raises(AppNotFound):
        await catalog.revisions("nope")
    with pytest.raises(AppNotFound):
        await catalog.revision("nope", 1)
    with pytest.raises(AppNotFound):
        await catalog.set_desired("nope", "stopped")
    with pytest.raises(AppNotFound):
        await catalog.set_current("nope", 1)
    with pytest.raises(AppNotFound):
        await catalog.remove("nope")
    await catalog.register(manifest("notes"))
    with pytest.raises(RevisionNotFound, match="no revision 2"):
        await catalog.revision("notes", 2)
    with pytest.raises(RevisionNotFound):
        await catalog.set_current("notes", 0)


async def test_list_is_sorted_by_name(catalog: Catalog) -> None:
    for name in ("zeta", "alpha", "mid"):
        await catalog.register(manifest(name))
    await catalog.register(manifest("ledger-api", kind="Interface", provides=["ledger"]))
    assert [app.name for app in await catalog.list()] == ["alpha", "ledger-api", "mid", "zeta"]


async def test_route_held_by_another_app_is_refused_and_nothing_written(
    catalog: Catalog,
) -> None:
    await catalog.register(manifest("expenses", routes=["/apps/expenses/"], provides=["exp"]))
    await catalog.register(manifest("billing"))
    before = await snapshot(catalog)
    taker = manifest("billing", routes=["/apps/billing/v2/", "/apps/expenses/"], provides=["bill"])
    with pytest.raises(RouteTaken) as caught:
        await catalog.register(taker)
    assert caught.value.holder == "expenses"
    assert caught.value.route == "/apps/expenses/"
    assert "expenses" in str(caught.value)
    assert await snapshot(catalog) == before
    # The refused register claimed none of its other route or capability.
    await catalog.register(manifest("third", routes=["/apps/billing/v2/"], provides=["bill"]))


async def test_capability_held_by_another_app_is_refused_and_nothing_written(
    catalog: Catalog,
) -> None:
    await catalog.register(manifest("ledger", provides=["bookkeeping"]))
    before = await snapshot(catalog)
    with pytest.raises(CapabilityTaken) as caught:
        await catalog.register(manifest("books", provides=["reporting", "bookkeeping"]))
    assert (caught.value.capability, caught.value.holder) == ("bookkeeping", "ledger")
    assert await snapshot(catalog) == before
    await catalog.register(manifest("other", routes=["/apps/books/"], provides=["reporting"]))


async def test_routes_differ_by_host(catalog: Catalog) -> None:
    await catalog.register(manifest("a", routes=[], hosts={"/": "a.example.com"}))
    await catalog.register(manifest("b", routes=[], hosts={"/": "b.example.com"}))
    await catalog.register(manifest("c", routes=["/shared/"]))
    await catalog.register(manifest("d", routes=[], hosts={"/shared/": "d.example.com"}))
    with pytest.raises(RouteTaken) as caught:
        await catalog.register(manifest("e", routes=[], hosts={"/": "a.example.com"}))
    assert (caught.value.route, caught.value.holder) == ("a.example.com/", "a")


async def test_new_revision_replaces_claims(catalog: Catalog) -> None:
    await catalog.register(manifest("a", routes=["/apps/a/", "/old/"], provides=["x", "y"]))
    await catalog.register(manifest("a", routes=["/apps/a/"], provides=["x"]))
    await catalog.register(manifest("b", routes=["/old/"], provides=["y"]))
    with pytest.raises(CapabilityTaken):
        await catalog.register(manifest("c", provides=["x"]))


async def test_rollback_restores_old_claims_and_numbering_continues(catalog: Catalog) -> None:
    await catalog.register(manifest("a", routes=["/apps/a/"], provides=["one"]))
    await catalog.register(manifest("a", routes=["/apps/a/v2/"], provides=["two"]))
    app = await catalog.set_current("a", 1)
    assert app.current_revision == 1
    assert app.manifest == (await catalog.revision("a", 1)).manifest
    # Revision 2's claims are free again, revision 1's are held.
    await catalog.register(manifest("b", routes=["/apps/a/v2/"], provides=["two"]))
    with pytest.raises(RouteTaken):
        await catalog.register(manifest("c", routes=["/apps/a/"]))
    three = await catalog.register(manifest("a", routes=["/apps/a/"], provides=["three"]))
    assert three.revision.number == 3
    assert (await catalog.set_current("a", 3)).current_revision == 3


async def test_rollback_to_a_route_taken_meanwhile_is_refused(catalog: Catalog) -> None:
    await catalog.register(manifest("a", routes=["/apps/a/", "/legacy/"]))
    await catalog.register(manifest("a", routes=["/apps/a/"]))
    await catalog.register(manifest("b", routes=["/legacy/"]))
    before = await snapshot(catalog)
    with pytest.raises(RouteTaken) as caught:
        await catalog.set_current("a", 1)
    assert caught.value.holder == "b"
    assert await snapshot(catalog) == before


async def test_same_digest_after_rollback_is_a_new_revision(catalog: Catalog) -> None:
    await catalog.register(manifest("a"))
    await catalog.register(manifest("a", replicas=3))
    await catalog.set_current("a", 1)
    again = await catalog.register(manifest("a", replicas=3))
    assert again.created and again.revision.number == 3


async def test_set_desired(catalog: Catalog, clock: FakeClock) -> None:
    await catalog.register(manifest("a"))
    await clock.advance(7)
    app = await catalog.set_desired("a", "stopped")
    assert app.desired_state == "stopped"
    assert app.updated_at == clock.time()
    assert (await catalog.get("a")).desired_state == "stopped"
    # A new revision keeps the desired state: stopping is the operator's call.
    assert (await catalog.register(manifest("a", replicas=2))).app.desired_state == "stopped"
    assert (await catalog.set_desired("a", "running")).desired_state == "running"


async def test_remove_frees_claims_and_the_name_starts_afresh(catalog: Catalog) -> None:
    await catalog.register(manifest("a", routes=["/apps/a/"], provides=["x"]))
    await catalog.register(manifest("a", routes=["/apps/a/"], provides=["x"], replicas=2))
    await catalog.remove("a")
    with pytest.raises(AppNotFound):
        await catalog.get("a")
    assert await catalog.list() == []
    await catalog.register(manifest("b", routes=["/apps/a/"], provides=["x"]))
    await catalog.remove("b")
    again = await catalog.register(manifest("a"))
    assert again.created and again.revision.number == 1


async def test_interface_registers_with_capabilities_only(catalog: Catalog) -> None:
    registration = await catalog.register(manifest("stripe", kind="Interface", provides=["pay"]))
    assert registration.app.kind == "Interface"
    assert registration.app.manifest.spec.run is None
    with pytest.raises(CapabilityTaken):
        await catalog.register(manifest("payments", provides=["pay"]))


async def test_fifty_concurrent_registrations_of_distinct_apps(catalog: Catalog) -> None:
    names = [f"app-{i:02d}" for i in range(50)]
    results = await asyncio.gather(
        *(catalog.register(manifest(name, provides=[f"cap-{name}"])) for name in names)
    )
    assert all(r.created and r.revision.number == 1 for r in results)
    assert [app.name for app in await catalog.list()] == names


async def test_fifty_concurrent_claims_of_one_route_have_one_winner(catalog: Catalog) -> None:
    names = [f"app-{i:02d}" for i in range(50)]
    results = await asyncio.gather(
        *(catalog.register(manifest(name, routes=["/contested/"])) for name in names),
        return_exceptions=True,
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    losers = [r for r in results if isinstance(r, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(r, RouteTaken) for r in losers), losers
    winner = winners[0].app.name
    assert {r.holder for r in losers if isinstance(r, RouteTaken)} == {winner}
    assert [app.name for app in await catalog.list()] == [winner]


async def test_fifty_concurrent_claims_of_one_capability_have_one_winner(
    catalog: Catalog,
) -> None:
    names = [f"app-{i:02d}" for i in range(50)]
    results = await asyncio.gather(
        *(catalog.register(manifest(name, provides=["contested"])) for name in names),
        return_exceptions=True,
    )
    losers = [r for r in results if isinstance(r, BaseException)]
    assert len(losers) == 49
    assert all(isinstance(r, CapabilityTaken) for r in losers), losers
    assert len(await catalog.list()) == 1


async def test_concurrent_revisions_of_one_app_are_numbered_without_gaps(
    catalog: Catalog,
) -> None:
    results = await asyncio.gather(
        *(catalog.register(manifest("busy", replicas=n)) for n in range(1, 21))
    )
    assert sorted(r.revision.number for r in results) == list(range(1, 21))
    assert [r.number for r in await catalog.revisions("busy")] == list(range(1, 21))
    app = await catalog.get("busy")
    assert app.current_revision in range(1, 21)
