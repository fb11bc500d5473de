"""Workload credentials rotate under a running app (issue 5, "Acceptance"): an app calling
through the mesh for more than twice its credential's lifetime never sees a refusal.

The node issues 3-second credentials (``workload_lifetime`` in courtyard.toml); the supervisor
rewrites the file at 2/3 of each lifetime and the SDK's client rereads it when it changes. The
gateway refuses a credential past its ``exp`` (RFC 7519 §4.1.4), so a client that kept the
first token would be refused after 3 s.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from interop.sso_testkit import check, create_user, running_node

pytestmark = pytest.mark.slow

LIFETIME = 3  # seconds: the node's workload_lifetime
RUN_FOR = 7.0  # seconds of calling: more than twice the lifetime

LOOP_APP = '''
"""Calls the target through the mesh in a loop with ONE long-lived client, and reports each
call's status with the SHA-256 of the credential file as it was just before the call."""
import asyncio, hashlib, os, pathlib, time

import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from courtyard.sdk import AsyncMeshClient, IdentityMiddleware, MeshError, from_environment

CREDENTIAL = pathlib.Path(os.environ["COURTYARD_WORKLOAD_CREDENTIAL"])
MESH = AsyncMeshClient.from_environment()


async def hello(request):
    return JSONResponse({"app": os.environ["COURTYARD_APP"], "act": request.state.identity.act})


async def loop(request):
    seconds, pause = float(request.query_params["seconds"]), float(request.query_params["pause"])
    calls, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        digest = hashlib.sha256(CREDENTIAL.read_bytes()).hexdigest()
        try:
            answer = await MESH.call("target", "/hello")
            calls.append({"status": answer.status_code, "sha256": digest, "body": answer.json()})
        except MeshError as exc:
            calls.append({"status": exc.status, "sha256": digest, "error": str(exc)})
        await asyncio.sleep(pause)
    return JSONResponse(calls)


async def health(request):
    return JSONResponse({"ok": True})


routes = [Route("/hello", hello), Route("/loop", loop), Route("/healthz", health)]
app = IdentityMiddleware(Starlette(routes=routes), verifier=from_environment())
uvicorn.run(app, host="127.0.0.1", port=int(os.environ["PORT"]), log_level="warning")
'''


def write_app(folder: Path, name: str, mesh_spec: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "app.py").write_text(LOOP_APP)
    (folder / "courtyard.yaml").write_text(
        f"""\
apiVersion: courtyard.dev/v1alpha1
kind: Application
metadata: {{name: {name}, owner: team-mesh, businessOwner: mesh@example.com}}
spec:
  run:
    command: ["python", "app.py"]
    health: {{path: /healthz}}
    readyTimeout: 20s
    drainTimeout: 2s
  routes: [{{path: /apps/{name}/}}]
  access: {{public: true}}
{mesh_spec}"""
    )
    return folder


def test_an_app_running_for_twice_the_credential_lifetime_keeps_calling(tmp_path: Path) -> None:
    settings = tmp_path / "courtyard.toml"
    settings.write_text(f"[node]\nworkload_lifetime = {LIFETIME}\n")
    with running_node(tmp_path / "node", extra=["--config", str(settings)]) as node:
        node.cli("deploy", str(write_app(tmp_path / "target", "target")))
        consumes = "  consumes: [{service: target, paths: ['/hello'], methods: [GET]}]\n"
        node.cli("deploy", str(write_app(tmp_path / "caller", "caller", consumes)))

        user = create_user(node, "lou@example.com", "Lou Loop")
        with node.api() as api:
            token = check(api.post(f"/api/v1/users/{user.id}/tokens", json={"name": "loop"}), 201)

        started = time.monotonic()
        with httpx.Client(
            base_url=node.url, timeout=60, headers={"Authorization": f"Bearer {token['token']}"}
        ) as client:
            calls = check(
                client.get("/apps/caller/loop", params={"seconds": RUN_FOR, "pause": 0.1}), 200
            )
        elapsed = time.monotonic() - started

    assert elapsed >= 2 * LIFETIME, elapsed
    failed = [call for call in calls if call["status"] != 200]
    assert not failed, failed
    assert len(calls) >= 20, len(calls)  # calls all along, not a few at the start
    assert all(call["body"]["act"] == "spiffe://courtyard.local/app/caller" for call in calls)
    # The file was rewritten at least twice while the app was calling, and the calls went on
    # with each new credential.
    credentials = list(dict.fromkeys(call["sha256"] for call in calls))
    assert len(credentials) >= 3, credentials
