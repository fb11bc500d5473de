"""The lifecycle over a memory catalog, a fake runtime and a recording data plane."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from courtyard.audit import Actor
from courtyard.catalog import (
    BundleStore,
    Catalog,
    ManifestInvalid,
    MemoryCatalogStore,
    RouteTaken,
    make_bundle,
)
from courtyard.lifecycle import AppNotDeployable, Caller, DataPlane, Lifecycle, LifecycleConfig
from fakes import FakeRuntime, RecordingAudit, RecordingPublisher

MANIFEST = """\
apiVersion: courtyard.dev/v1alpha1
kind: {kind}
metadata: {{name: {name}, owner: team-a, businessOwner: a@example.com}}
spec:
{spec}
"""
RUN = """\
  run: {command: ["python", "app.py"], replicas: 2}
  routes: [{path: /apps/NAME/}]
"""


def manifest(name: str, *, kind: str = "Application", route: str | None = None) -> str:
    spec = RUN.replace("NAME", route or name) if kind != "Interface" else "  provides: [x]\n"
    return MANIFEST.format(kind=kind, name=name, spec=spec)


AUDIT = RecordingAudit()


@pytest.fixture
def parts(tmp_path: Path) -> tuple[Lifecycle, FakeRuntime, RecordingPublisher]:
    runtime = FakeRuntime()
    publisher = RecordingPublisher()
    dataplane = DataPlane(publisher)
    dataplane.bind_endpoints(runtime.endpoints)
    AUDIT.events.clear()
    lifecycle = Lifecycle(
        Catalog(MemoryCatalogStore()),
        BundleStore(tmp_path / "bundles"),
        runtime,
        dataplane,
        AUDIT,
        LifecycleConfig(domain="apps.test"),
    )
    return lifecycle, runtime, publisher


async def test_deploy_registers_then_rolls_out_and_routes(
    parts: tuple[Lifecycle, FakeRuntime, RecordingPublisher],
) -> None:
    lifecycle, runtime, publisher = parts
    deployment = await lifecycle.deploy_manifest(manifest("notes"))
    assert deployment.registration.created
    assert deployment.rollout is not None
    await lifecycle.wait_idle()
    assert lifecycle.rollout_of("notes").state == "succeeded"  # type: ignore[union-attr]
    assert runtime.specs["notes"].replicas == 2
    assert runtime.specs["notes"].command == ("python", "app.py")
    await lifecycle.reconcile()
    last = publisher.snapshots[-1]
    assert {(r["path"], r["host"]) for r in last["routes"]} == {
        ("/apps/notes/", None),
        ("/", "notes.apps.test"),
    }
    assert [i["id"] for i in last["apps"]["notes"]["instances"]] == ["notes-1"]


async def test_same_manifest_twice_makes_no_new_revision_or_rollout(
    parts: tuple[Lifecycle, FakeRuntime, RecordingPublisher],
) -> None:
    lifecycle, runtime, _ = parts
    await lifecycle.deploy_manifest(manifest("notes"))
    await lifecycle.wait_idle()
    again = await lifecycle.deploy_manifest(manifest("notes"))
    await lifecycle.wait_idle()
    assert not again.registration.created
    assert [c for c in runtime.calls if c[0] == "apply"] == [("apply", "notes@1")]


async def test_failed_rollout_is_reported_and_node_goes_on(
    parts: tuple[Lifecycle, FakeRuntime, RecordingPublisher],
) -> None:
    lifecycle, runtime, _ = parts
    runtime.fail_next = True
    await lifecycle.deploy_manifest(manifest("broken"))
    await lifecycle.wait_idle()
    rollout = lifecycle.rollout_of("broken")
    assert rollout is not None and rollout.state == "failed" and "not ready" in rollout.message
    await lifecycle.deploy_manifest(manifest("fine"))
    await lifecycle.wait_idle()
    assert lifecycle.rollout_of("fine").state == "succeeded"  # type: ignore[union-attr]


async def test_newest_deploy_replaces_a_waiting_rollout(
    parts: tuple[Lifecycle, FakeRuntime, RecordingPublisher],
) -> None:
    lifecycle, runtime, _ = parts
    runtime.gate = asyncio.Event()
    await lifecycle.deploy_manifest(manifest("notes"))
    await asyncio.sleep(0)
    await lifecycle.deploy_manifest(manifest("notes").replace("replicas: 2", "replicas: 3"))
    runtime.gate.set()
    await lifecycle.wait_idle()
    assert lifecycle.rollout_of("notes").revision == 2  # type: ignore[union-attr]
    assert runtime.specs["notes"].replicas == 3


async def test_interface_registers_without_runtime(
    parts: tuple[Lifecycle, FakeRuntime, RecordingPublisher],
) -> None:
    lifecycle, runtime, _ = parts
    deployment = await lifecycle.deploy_manifest(manifest("ledger-api", kind="Interface"))
    assert deployment.rollout is None
    assert runtime.calls == []
    with pytest.raises(AppNotDeployable):
        await lifecycle.restart("ledger-api")


async def test_conflicting_route_is_refused(
    parts: tuple[Lifecycle, FakeRuntime, RecordingPublisher],
) -> None:
    lifecycle, _, _ = parts
    await lifecycle.deploy_manifest(manifest("notes"))
    with pytest.raises(RouteTaken, match="notes"):
        await lifecycle.deploy_manifest(manifest("other", route="notes"))


async def test_stop_restart_remove(
    parts: tuple[Lifecycle, FakeRuntime, RecordingPublisher],
) -> None:
    lifecycle, runtime, publisher = parts
    await lifecycle.deploy_manifest(manifest("notes"))
    await lifecycle.wait_idle()
    await lifecycle.stop("notes")
    assert (await lifecycle.catalog.get("notes")).desired_state == "stopped"
    assert "notes" not in runtime.specs
    await lifecycle.restart("notes")
    await lifecycle.wait_idle()
    assert (await lifecycle.catalog.get("notes")).desired_state == "running"
    assert "notes" in runtime.specs
    await lifecycle.remove("notes")
    assert await lifecycle.catalog.list() == []
    assert publisher.snapshots[-1]["routes"] == []


async def test_bundle_deploy_uses_the_stored_bundle(
    parts: tuple[Lifecycle, FakeRuntime, RecordingPublisher], tmp_path: Path
) -> None:
    lifecycle, runtime, _ = parts
    folder = tmp_path / "app"
    folder.mkdir()
    (folder / "courtyard.yaml").write_text(manifest("notes"))
    (folder / "app.py").write_text("print('hi')\n")
    deployment = await lifecycle.deploy_bundle(make_bundle(folder))
    await lifecycle.wait_idle()
    bundle = runtime.specs["notes"].bundle
    assert bundle is not None and (bundle / "app.py").read_text() == "print('hi')\n"
    assert deployment.registration.revision.bundle_digest


async def test_every_change_and_refusal_is_audited_with_its_caller(
    parts: tuple[Lifecycle, FakeRuntime, RecordingPublisher],
) -> None:
    lifecycle, _, _ = parts
    caller = Caller(Actor(kind="user", id="dana", auth="token"), request_id="req-1")
    await lifecycle.deploy_manifest(manifest("notes"), caller=caller)
    await lifecycle.wait_idle()
    with pytest.raises(RouteTaken):
        await lifecycle.deploy_manifest(manifest("other", route="notes"), caller=caller)
    with pytest.raises(ManifestInvalid):
        await lifecycle.deploy_manifest("kind: [", caller=caller)
    await lifecycle.restart("notes", caller)
    await lifecycle.wait_idle()
    await lifecycle.stop("notes", caller)
    await lifecycle.remove("notes", caller)
    assert AUDIT.actions() == [
        ("app.deploy", "app/notes", "success"),
        ("app.rollout", "app/notes", "success"),
        ("app.deploy", "app/other", "failure"),
        ("app.deploy", "manifest", "failure"),
        ("app.restart", "app/notes", "success"),
        ("app.rollout", "app/notes", "success"),
        ("app.stop", "app/notes", "success"),
        ("app.remove", "app/notes", "success"),
    ]
    assert {e.actor for e in AUDIT.events} == {caller.actor}
    assert {e.request_id for e in AUDIT.events} == {"req-1"}
    refused = AUDIT.events[2]
    assert refused.reason is not None and "notes" in refused.reason  # names the holder
    assert AUDIT.events[0].details["revision"] == 1
