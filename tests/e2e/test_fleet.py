"""Acceptance tests of the node as a whole: the demo fleet, redeploys under load, crashes."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import NodeProcess, wait_for, write_app

from interop.sso_testkit import create_user

pytestmark = pytest.mark.slow


def app_state(node: NodeProcess, name: str) -> dict[str, Any]:
    with node.api() as api:
        response = api.get(f"/api/v1/apps/{name}")
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]


def test_demo_fleet_answers_through_one_port(node_factory: Any) -> None:
    node = node_factory(extra=["--demo"]).start()

    def all_running() -> bool:
        with node.api() as api:
            apps = api.get("/api/v1/apps").json()
        return len(apps) >= 3 and all(a["phase"] == "running" for a in apps)

    wait_for(all_running, 90, "the demo apps to run")
    with node.api() as api:
        apps = api.get("/api/v1/apps").json()
        owners = {a["name"]: a["owner"] for a in apps}
    assert len(set(owners.values())) >= 3  # each demo app has its own owner
    # Every demo app is private: a member of all three teams opens them with an API token,
    # and each greets them by the name in the gateway's signed assertion.
    dana = create_user(
        node, "dana@example.com", "Dana Fleet", groups=("finance", "ops", "platform")
    )
    with node.api() as api:
        issued = api.post(f"/api/v1/users/{dana.id}/tokens", json={"name": "fleet test"})
        assert issued.status_code == 201, issued.text
        token = issued.json()["token"]
    with httpx.Client(base_url=node.url, timeout=10) as client:
        for name in owners:
            assert client.get(f"/apps/{name}/").status_code == 401  # default deny
            response = client.get(f"/apps/{name}/", headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 200, (name, response.text)
            assert response.headers.get("x-request-id")
            assert "Dana Fleet" in response.text
        # Two demo apps call each other through the mesh: expenses asks notes, on Dana's behalf.
        bearer = {"Authorization": f"Bearer {token}"}
        notes = client.get("/apps/expenses/api/team-notes", headers=bearer).json()
        assert notes["available"] is True and notes["count"] >= 0, notes
        assert "team notes (from the notes app, through the mesh)" in (
            client.get("/apps/expenses/", headers=bearer).text
        )
        assert client.get("/apps/no-such-app/").status_code == 404
        assert client.get("/healthz").json() == {"status": "ok"}
    status = node.cli("status")
    for name in owners:
        assert name in status.stdout
    assert "BUDGET" in status.stdout and "P99" in status.stdout
    metrics = httpx.get(f"{node.admin_url}/metrics", timeout=10).text
    assert 'courtyard_gateway_requests_total{app="expenses",route="/apps/expenses/"' in metrics
    assert 'courtyard_mesh_requests_total{caller="expenses",target="notes"' in metrics


def test_one_request_across_two_apps_is_one_trace(node_factory: Any) -> None:
    """Issue 6: gateway -> expenses -> mesh -> notes shows as one trace of at least three
    spans in `courtyard traces` (here: gateway, expenses, mesh and notes)."""
    node = node_factory(extra=["--demo"]).start()

    def all_running() -> bool:
        with node.api() as api:
            apps = api.get("/api/v1/apps").json()
        return len(apps) >= 3 and all(a["phase"] == "running" for a in apps)

    wait_for(all_running, 90, "the demo apps to run")
    dana = create_user(node, "dana@example.com", "Dana Trace", groups=("finance", "ops"))
    with node.api() as api:
        token = api.post(f"/api/v1/users/{dana.id}/tokens", json={"name": "t"}).json()["token"]
    trace_id = os.urandom(16).hex()
    headers = {
        "Authorization": f"Bearer {token}",
        "traceparent": f"00-{trace_id}-{os.urandom(8).hex()}-01",
    }
    with httpx.Client(base_url=node.url, timeout=10) as client:
        answer = client.get("/apps/expenses/api/team-notes", headers=headers)
        assert answer.json()["available"] is True, answer.text

    def whole_trace() -> dict[str, Any] | None:
        listing = node.cli("traces", "expenses", "--json", "--limit", "50")
        found = [t for t in json.loads(listing.stdout) if t["traceId"] == trace_id]
        return found[0] if found and found[0]["spans"] >= 4 else None

    summary = wait_for(whole_trace, 30, "the trace to hold every hop")
    assert summary["services"][:1] == ["gateway"]
    assert {"gateway", "expenses", "mesh", "notes"} <= set(summary["services"])
    spans = json.loads(node.cli("trace", trace_id, "--json").stdout)["spans"]
    by_service = {span["service"]: span for span in spans}
    # Each hop is the child of the one before: one tree, not four traces.
    assert by_service["expenses"]["parent_id"] == by_service["gateway"]["span_id"]
    assert by_service["mesh"]["parent_id"] == by_service["expenses"]["span_id"]
    assert by_service["notes"]["parent_id"] == by_service["mesh"]["span_id"]
    tree = node.cli("trace", trace_id).stdout
    assert "notes: GET" in tree and "mesh: GET notes" in tree
    table = node.cli("traces", "expenses").stdout
    assert trace_id in table


@pytest.mark.parametrize("workers", [1, 2])
def test_redeploy_under_load_drops_nothing(node_factory: Any, tmp_path: Path, workers: int) -> None:
    node = node_factory(workers=workers).start()
    folder = write_app(tmp_path / "src" / "hello", "hello", version="1", replicas=2)
    node.cli("deploy", str(folder))

    failures: list[str] = []
    versions: list[tuple[float, str]] = []
    stop = threading.Event()

    def client_loop() -> None:
        with httpx.Client(base_url=node.url, timeout=10) as client:
            while not stop.is_set():
                try:
                    response = client.get("/apps/hello/work")
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                    continue
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.text[:200]}")
                    continue
                versions.append((time.monotonic(), response.json()["version"]))

    threads = [threading.Thread(target=client_loop) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: len(versions) > 50, 20, "traffic before the redeploy")
        write_app(folder, "hello", version="2", replicas=2)
        node.cli("deploy", str(folder))
        switched_at = time.monotonic()
        count_at_switch = len(versions)
        wait_for(lambda: len(versions) > count_at_switch + 100, 20, "traffic after the redeploy")
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)

    assert failures == []
    seen = Counter(version for _, version in versions)
    assert seen["1"] > 0 and seen["2"] > 0
    assert {v for t, v in versions if t > switched_at + 0.5} == {"2"}
    detail = app_state(node, "hello")
    assert detail["revision"] == 2
    assert {i["revision"] for i in detail["instances"]} == {2}


def test_killed_instance_is_restarted_and_requests_never_hang(
    node_factory: Any, tmp_path: Path
) -> None:
    node = node_factory().start()
    node.cli("deploy", str(write_app(tmp_path / "one", "solo", replicas=1)))
    node.cli("deploy", str(write_app(tmp_path / "two", "pair", replicas=2)))

    for name in ("solo", "pair"):
        victim = app_state(node, name)["instances"][0]
        os.kill(victim["pid"], signal.SIGKILL)
        outcomes: Counter[str] = Counter()
        with httpx.Client(base_url=node.url, timeout=15) as client:
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                started = time.monotonic()
                response = client.get(f"/apps/{name}/")
                assert time.monotonic() - started < 10
                if response.status_code == 503:
                    assert response.headers["retry-after"]
                    assert response.headers["content-type"].startswith("application/problem+json")
                else:
                    assert response.status_code == 200, response.text
                outcomes[str(response.status_code)] += 1
        if name == "pair":
            assert outcomes["503"] == 0  # the other replica took the traffic

        def restarted(name: str = name, victim_id: str = victim["id"]) -> bool:
            detail = app_state(node, name)
            ready = [i for i in detail["instances"] if i["state"] == "ready"]
            return detail["restarts"] >= 1 and len(ready) == detail["desiredReplicas"]

        wait_for(restarted, 30, f"{name} to be restarted")
        assert httpx.get(f"{node.url}/apps/{name}/", timeout=10).status_code == 200


def test_app_that_exits_at_once_reaches_crash_loop_and_node_stays_healthy(
    node_factory: Any, tmp_path: Path
) -> None:
    node = node_factory().start()
    node.cli("deploy", str(write_app(tmp_path / "ok", "steady")))
    broken = write_app(
        tmp_path / "bad", "broken", command='["python", "-c", "import sys; sys.exit(3)"]'
    )
    result = node.cli("deploy", str(broken), check=False)
    assert result.returncode != 0
    assert "broken" in result.stderr

    wait_for(lambda: app_state(node, "broken")["phase"] == "crash-loop", 60, "crash-loop")
    status = node.cli("status", "broken")
    assert "crash-loop" in status.stdout
    response = httpx.get(f"{node.url}/apps/broken/", timeout=10)
    assert response.status_code == 503 and response.headers["retry-after"]
    assert httpx.get(f"{node.url}/apps/steady/", timeout=10).status_code == 200
    assert httpx.get(f"{node.url}/healthz", timeout=10).status_code == 200


def test_a_stopped_apps_logs_stay_readable_after_a_node_restart(
    node_factory: Any, tmp_path: Path
) -> None:
    node = node_factory().start()
    node.cli("deploy", str(write_app(tmp_path / "app", "quiet")))
    node.cli("stop", "quiet")
    assert node.stop() == 0
    node.start()
    assert app_state(node, "quiet")["phase"] == "stopped"
    assert "listening" in node.cli("logs", "quiet").stdout
