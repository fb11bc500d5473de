"""Each app's mesh policy reaches the gateway's snapshot from its manifest, route or no route,
and the node's mesh settings ride along."""

from __future__ import annotations

from pathlib import Path

import pytest

from courtyard.catalog import BundleStore, Catalog, MemoryCatalogStore
from courtyard.contracts import MeshSettings
from courtyard.gateway import check_snapshot
from courtyard.lifecycle import DataPlane, Lifecycle
from fakes import FakeRuntime, RecordingAudit, RecordingPublisher

ORDERS = """\
apiVersion: courtyard.dev/v1alpha1
kind: Application
metadata: {name: orders, owner: team-a, businessOwner: a@example.com}
spec:
  run: {command: ["python", "app.py"]}
  routes: [{path: /apps/orders/}]
  consumes:
    - {service: books, paths: ["/entries/**"], methods: [GET, POST]}
    - {service: reports}
  publishes: [orders.created]
"""
BOOKS = """\
apiVersion: courtyard.dev/v1alpha1
kind: Application
metadata: {name: books, owner: team-a, businessOwner: a@example.com}
spec:
  run: {command: ["python", "app.py"]}
  accepts:
    - {from: orders, paths: ["/entries/**"], methods: [GET]}
    - {from: "*", paths: [/health]}
  subscribes:
    - {topic: orders.created, handler: /events/orders}
"""
SETTINGS = MeshSettings(
    trust_domain="courtyard.local", events_app="courtyard", events_path="/internal/events/"
)


@pytest.fixture
def parts(tmp_path: Path) -> tuple[Lifecycle, DataPlane, RecordingPublisher]:
    runtime = FakeRuntime()
    publisher = RecordingPublisher()
    dataplane = DataPlane(publisher)
    dataplane.bind_endpoints(runtime.endpoints)
    lifecycle = Lifecycle(
        Catalog(MemoryCatalogStore()),
        BundleStore(tmp_path / "bundles"),
        runtime,
        dataplane,
        RecordingAudit(),
    )
    return lifecycle, dataplane, publisher


async def test_manifest_policies_reach_the_snapshot(
    parts: tuple[Lifecycle, DataPlane, RecordingPublisher],
) -> None:
    lifecycle, _, publisher = parts
    await lifecycle.deploy_manifest(ORDERS)
    await lifecycle.deploy_manifest(BOOKS)
    await lifecycle.wait_idle()
    await lifecycle.reconcile()
    apps = publisher.snapshots[-1]["apps"]
    assert apps["orders"]["mesh"] == {
        "consumes": [
            {"service": "books", "paths": ["/entries/**"], "methods": ["GET", "POST"]},
            {"service": "reports", "paths": ["/**"], "methods": ["*"]},
        ],
        "accepts": None,
        "publishes": ["orders.created"],
        "subscribes": [],
    }
    assert apps["books"]["mesh"] == {
        "consumes": [],
        "accepts": [
            {"caller": "orders", "paths": ["/entries/**"], "methods": ["GET"]},
            {"caller": "*", "paths": ["/health"], "methods": ["*"]},
        ],
        "publishes": [],
        "subscribes": [{"topic": "orders.created", "handler": "/events/orders"}],
    }


async def test_an_app_without_routes_is_in_the_snapshot_for_the_mesh(
    parts: tuple[Lifecycle, DataPlane, RecordingPublisher],
) -> None:
    lifecycle, _, publisher = parts
    # An Application without a routes section gets /apps/<name>/; an empty list means none.
    await lifecycle.deploy_manifest(BOOKS.replace("  accepts:", "  routes: []\n  accepts:"))
    await lifecycle.wait_idle()
    await lifecycle.reconcile()
    last = publisher.snapshots[-1]
    assert [route["app"] for route in last["routes"]] == []
    books = last["apps"]["books"]
    assert [i["id"] for i in books["instances"]] == ["books-1"]
    assert books["access"] == {"public": False, "allow": []}
    check_snapshot(last)


async def test_mesh_settings_ride_along_once_set(
    parts: tuple[Lifecycle, DataPlane, RecordingPublisher],
) -> None:
    lifecycle, dataplane, publisher = parts
    await lifecycle.deploy_manifest(ORDERS)
    await lifecycle.reconcile()
    assert "mesh" not in publisher.snapshots[-1]
    dataplane.set_mesh(SETTINGS)
    await dataplane.sync()
    assert publisher.snapshots[-1]["mesh"] == SETTINGS
    check_snapshot(publisher.snapshots[-1])
    dataplane.set_mesh(None)
    await dataplane.sync()
    assert "mesh" not in publisher.snapshots[-1]


async def test_a_removed_app_leaves_the_mesh(
    parts: tuple[Lifecycle, DataPlane, RecordingPublisher],
) -> None:
    lifecycle, _, publisher = parts
    await lifecycle.deploy_manifest(BOOKS)
    await lifecycle.wait_idle()
    await lifecycle.remove("books")
    assert "books" not in publisher.snapshots[-1]["apps"]
