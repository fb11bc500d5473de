"""The control-plane API in process: token required, problem documents for every failure."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from courtyard.audit import AuditConfig, AuditLog, MemoryAuditStore
from courtyard.catalog import BundleStore, Catalog, MemoryCatalogStore
from courtyard.lifecycle import DataPlane, Lifecycle
from courtyard.node import build_api
from fakes import FakeRuntime, RecordingPublisher

TOKEN = "t0ken"
MANIFEST = """\
apiVersion: courtyard.dev/v1alpha1
kind: Application
metadata: {name: NAME, owner: team-a, businessOwner: a@example.com}
spec:
  run: {command: ["python", "app.py"]}
  routes: [{path: /apps/ROUTE/}]
"""


def manifest(name: str, route: str | None = None) -> str:
    return MANIFEST.replace("NAME", name).replace("ROUTE", route or name)


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Lifecycle]]:
    runtime = FakeRuntime()
    dataplane = DataPlane(RecordingPublisher())
    dataplane.bind_endpoints(runtime.endpoints)
    audit = await AuditLog.open(AuditConfig(data_dir=tmp_path / "data"), MemoryAuditStore())
    lifecycle = Lifecycle(
        Catalog(MemoryCatalogStore()), BundleStore(tmp_path / "b"), runtime, dataplane, audit
    )
    api = build_api(lifecycle, audit, TOKEN, lambda: {"version": "test"})
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api),
        base_url="http://cp",
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as http:
        yield http, lifecycle
    await lifecycle.aclose()
    await audit.aclose()


YAML = {"Content-Type": "application/yaml"}


async def test_every_api_call_needs_the_token(client: tuple[httpx.AsyncClient, Lifecycle]) -> None:
    http, _ = client
    for headers in (
        {"Authorization": ""},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Basic x"},
    ):
        response = await http.get("/api/v1/apps", headers=headers)
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert TOKEN not in response.text
    assert (
        await http.get("/api/v1/openapi.json", headers={"Authorization": ""})
    ).status_code == 200


async def test_deploy_list_get_instances(client: tuple[httpx.AsyncClient, Lifecycle]) -> None:
    http, lifecycle = client
    created = await http.post("/api/v1/apps", content=manifest("notes"), headers=YAML)
    assert created.status_code == 201, created.text
    assert created.json()["revision"]["number"] == 1
    again = await http.post("/api/v1/apps", content=manifest("notes"), headers=YAML)
    assert again.status_code == 200 and again.json()["created"] is False
    await lifecycle.wait_idle()
    listing = (await http.get("/api/v1/apps")).json()
    assert [a["name"] for a in listing] == ["notes"]
    assert listing[0]["phase"] == "running"
    detail = (await http.get("/api/v1/apps/notes")).json()
    assert detail["owner"] == "team-a" and detail["rollout"]["state"] == "succeeded"
    assert (await http.get("/api/v1/apps/notes/instances")).json() == []
    revisions = (await http.get("/api/v1/apps/notes/revisions")).json()
    assert [r["number"] for r in revisions] == [1]


async def test_failures_are_problem_documents(client: tuple[httpx.AsyncClient, Lifecycle]) -> None:
    http, _ = client
    await http.post("/api/v1/apps", content=manifest("notes"), headers=YAML)

    taken = await http.post("/api/v1/apps", content=manifest("other", "notes"), headers=YAML)
    assert taken.status_code == 409
    assert taken.json()["holder"] == "notes"

    bad = await http.post("/api/v1/apps", content=b"metadata: [", headers=YAML)
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["source"] == "courtyard.yaml"

    wrong_type = await http.post(
        "/api/v1/apps", content=b"x", headers={"Content-Type": "text/plain"}
    )
    assert wrong_type.status_code == 400

    empty = await http.post("/api/v1/apps", content=b"", headers=YAML)
    assert empty.status_code == 400

    missing = await http.get("/api/v1/apps/nope")
    assert missing.status_code == 404

    no_route = await http.get("/api/v1/nothing-here")
    assert no_route.status_code == 404

    bad_query = await http.get("/api/v1/apps/notes/logs", params={"tail": "-1"})
    assert bad_query.status_code == 422
    for response in (taken, bad, wrong_type, empty, missing, no_route, bad_query):
        assert response.headers["content-type"] == "application/problem+json"
        assert {"type", "title", "status"} <= set(response.json())


async def test_stop_restart_remove(client: tuple[httpx.AsyncClient, Lifecycle]) -> None:
    http, lifecycle = client
    await http.post("/api/v1/apps", content=manifest("notes"), headers=YAML)
    await lifecycle.wait_idle()
    stopped = await http.post("/api/v1/apps/notes/stop")
    assert stopped.status_code == 200 and stopped.json()["desiredState"] == "stopped"
    restarted = await http.post("/api/v1/apps/notes/restart")
    assert restarted.status_code == 202
    await lifecycle.wait_idle()
    assert (await http.delete("/api/v1/apps/notes")).status_code == 204
    assert (await http.get("/api/v1/apps/notes")).status_code == 404


async def test_denials_and_changes_land_in_the_audit_trail(
    client: tuple[httpx.AsyncClient, Lifecycle],
) -> None:
    http, _ = client
    denied = await http.get(
        "/api/v1/apps", headers={"Authorization": "Bearer nope", "X-Request-Id": "r-9"}
    )
    assert denied.status_code == 401
    await http.post("/api/v1/apps", content=manifest("notes"), headers=YAML)
    items = (await http.get("/api/v1/audit")).json()["entries"]
    summary = [(e["action"], e["outcome"]) for e in items]
    assert ("access.deny", "denied") in summary
    assert ("app.deploy", "success") in summary
    deny = next(e for e in items if e["action"] == "access.deny")
    assert deny["requestId"] == "r-9"
    assert "nope" not in str(items)  # the credential never enters the trail
    deploy = next(e for e in items if e["action"] == "app.deploy")
    assert deploy["actor"]["id"] == "svc:node-admin"
    verified = (await http.get("/api/v1/audit/verify")).json()
    assert verified["ok"] is True


async def test_retention_archives_and_the_trail_still_verifies(
    client: tuple[httpx.AsyncClient, Lifecycle],
) -> None:
    http, _ = client
    for name in ("a1", "a2", "a3"):
        await http.post("/api/v1/apps", content=manifest(name), headers=YAML)
    (await http.get("/api/v1/audit/export")).raise_for_status()  # signs a checkpoint
    latest = (await http.get("/api/v1/audit/checkpoints/latest")).json()
    size = latest["treeSize"]
    archived = (await http.post("/api/v1/audit/archive", params={"before": size + 1})).json()
    segment = archived["archived"]
    assert segment["firstSeq"] == 1 and segment["lastSeq"] == size
    assert (await http.get("/api/v1/audit/1")).status_code == 410
    assert (await http.get("/api/v1/audit/verify")).json()["ok"] is True
    items = (await http.get("/api/v1/audit", params={"action": "audit.archive"})).json()
    assert [e["actor"]["id"] for e in items["entries"]] == ["svc:node-admin"]
    refused = await http.post("/api/v1/audit/archive", params={"before": 0})
    assert refused.status_code == 422
