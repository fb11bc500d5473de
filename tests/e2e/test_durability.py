"""Acknowledged writes survive SIGKILL of the node; nothing of the old node keeps running."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import NodeProcess, wait_for

pytestmark = pytest.mark.slow

REGISTRATIONS = 100
APPLICATIONS = 10  # the others register Interfaces (no process)


def manifest(index: int) -> dict[str, Any]:
    name = f"svc-{index:03d}"
    document: dict[str, Any] = {
        "apiVersion": "courtyard.dev/v1alpha1",
        "metadata": {"name": name, "owner": "team-load", "businessOwner": "load@example.com"},
    }
    if index < APPLICATIONS:
        document["kind"] = "Application"
        document["spec"] = {
            "run": {
                "command": ["python", "-m", "http.server", "${PORT}", "--bind", "127.0.0.1"],
                "health": {"path": "/"},
            },
            "routes": [{"path": f"/apps/{name}/"}],
            "provides": [f"capability-{index}"],
        }
    else:
        document["kind"] = "Interface"
        document["spec"] = {"provides": [f"capability-{index}"]}
    return document


def processes_of(node_id_fragment: str) -> list[int]:
    """Pids of processes whose environment names the given node id."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if f"COURTYARD_NODE_ID={node_id_fragment}".encode() in environ:
            found.append(int(entry.name))
    return found


def test_sigkill_during_registrations_loses_no_acknowledged_write(node_factory: Any) -> None:
    node: NodeProcess = node_factory().start()
    acknowledged: list[str] = []
    lock = threading.Lock()
    killed = threading.Event()

    def register(index: int) -> None:
        body = json.dumps(manifest(index))
        try:
            with node.api() as api:
                response = api.post(
                    "/api/v1/apps", content=body, headers={"Content-Type": "application/json"}
                )
        except httpx.HTTPError:
            return
        if response.status_code in (200, 201):
            with lock:
                acknowledged.append(manifest(index)["metadata"]["name"])
                if len(acknowledged) >= REGISTRATIONS // 3 and not killed.is_set():
                    killed.set()
                    node.kill()

    threads = [threading.Thread(target=register, args=(i,)) for i in range(REGISTRATIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert killed.is_set(), "the node was not killed while registrations were in flight"
    old_node_id = f"{os.uname().nodename}-{node.pid}"

    node.start()
    with node.api() as api:
        names = {app["name"] for app in api.get("/api/v1/apps").json()}
    missing = sorted(set(acknowledged) - names)
    assert missing == [], f"acknowledged but lost: {missing}"
    wait_for(lambda: processes_of(old_node_id) == [], 15, "the old node's apps to be gone")
    assert node.stop() == 0
    with sqlite3.connect(node.data_dir / "courtyard.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
