"""Rollback to an earlier revision and scaling by a new revision, both audited."""

from __future__ import annotations

from pathlib import Path

import pytest

from courtyard.catalog import BundleStore, Catalog, ManifestInvalid, MemoryCatalogStore
from courtyard.lifecycle import DataPlane, Lifecycle, LifecycleConfig, NoEarlierRevision
from fakes import FakeRuntime, RecordingAudit, RecordingPublisher

MANIFEST = """\
apiVersion: courtyard.dev/v1alpha1
kind: Application
metadata: {name: notes, owner: team-a, businessOwner: a@example.com}
spec:
  run: {command: ["python", "app.py"], replicas: 2}
"""


def manifest(_: str) -> str:
    return MANIFEST


@pytest.fixture
def parts(tmp_path: Path) -> tuple[Lifecycle, FakeRuntime, RecordingAudit]:
    runtime = FakeRuntime()
    dataplane = DataPlane(RecordingPublisher())
    dataplane.bind_endpoints(runtime.endpoints)
    audit = RecordingAudit()
    lifecycle = Lifecycle(
        Catalog(MemoryCatalogStore()),
        BundleStore(tmp_path / "bundles"),
        runtime,
        dataplane,
        audit,
        LifecycleConfig(domain="apps.test"),
    )
    return lifecycle, runtime, audit


async def test_rollback_goes_to_the_revision_before(
    parts: tuple[Lifecycle, FakeRuntime, RecordingAudit],
) -> None:
    lifecycle, runtime, audit = parts
    await lifecycle.deploy_manifest(manifest("notes"))
    await lifecycle.deploy_manifest(manifest("notes").replace("app.py", "app2.py"))
    await lifecycle.wait_idle()
    assert runtime.specs["notes"].revision == 2
    rollout = await lifecycle.rollback("notes")
    await lifecycle.wait_idle()
    assert rollout.revision == 1 and rollout.state == "succeeded"
    assert runtime.specs["notes"].command == ("python", "app.py")
    assert (await lifecycle.catalog.get("notes")).current_revision == 1
    (event,) = [e for e in audit.events if e.action == "app.rollback"]
    assert event.outcome == "success" and dict(event.details) == {"from": 2, "revision": 1}


async def test_rollback_to_a_named_revision_and_nothing_before_the_first(
    parts: tuple[Lifecycle, FakeRuntime, RecordingAudit],
) -> None:
    lifecycle, runtime, audit = parts
    await lifecycle.deploy_manifest(manifest("notes"))
    await lifecycle.wait_idle()
    with pytest.raises(NoEarlierRevision, match="nothing to roll back to"):
        await lifecycle.rollback("notes")
    assert [e.outcome for e in audit.events if e.action == "app.rollback"] == ["failure"]
    await lifecycle.deploy_manifest(manifest("notes").replace("app.py", "app2.py"))
    await lifecycle.deploy_manifest(manifest("notes").replace("app.py", "app3.py"))
    await lifecycle.wait_idle()
    await lifecycle.rollback("notes", to=1)
    await lifecycle.wait_idle()
    assert runtime.specs["notes"].revision == 1


async def test_scale_makes_a_revision_with_only_replicas_changed(
    parts: tuple[Lifecycle, FakeRuntime, RecordingAudit],
) -> None:
    lifecycle, runtime, audit = parts
    await lifecycle.deploy_manifest(manifest("notes"))
    await lifecycle.wait_idle()
    deployment = await lifecycle.scale("notes", 3)
    await lifecycle.wait_idle()
    assert deployment.registration.revision.number == 2
    assert runtime.specs["notes"].replicas == 3
    assert runtime.specs["notes"].command == ("python", "app.py")
    (event,) = [e for e in audit.events if e.action == "app.scale"]
    assert event.details["from"] == 2 and event.details["replicas"] == 3
    with pytest.raises(ManifestInvalid):
        await lifecycle.scale("notes", 65)


async def test_catalog_observers_see_every_change(
    parts: tuple[Lifecycle, FakeRuntime, RecordingAudit],
) -> None:
    lifecycle, _, _ = parts
    seen: list[list[str]] = []
    lifecycle.on_catalog(lambda apps: seen.append([a.name for a in apps]))

    def broken(_: object) -> None:
        raise RuntimeError("observer bug")

    lifecycle.on_catalog(broken)  # logged, and the deploy still succeeds
    await lifecycle.deploy_manifest(manifest("notes"))
    await lifecycle.wait_idle()
    await lifecycle.remove("notes")
    assert seen == [["notes"], []]
