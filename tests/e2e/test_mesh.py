"""Mesh acceptance on a whole node (issue 5): a declared call goes through with the end user as
``sub`` and the calling app as ``act``; an undeclared path or method is refused and audited; a
credential the node did not issue, an expired one, one of a stopped app, or another kind of
token is refused; an app's port refuses a request without an assertion; events reach every
authorized subscriber and nobody else; dead deliveries redrive; the graph marks what was used.

Rules come from the issue ("Acceptance"), RFC 8693 §4.1 (``act``), RFC 6750 §3.1 (401 for a
bad bearer token), RFC 9457 (problem documents) and CloudEvents 1.0 (``id``).
"""

from __future__ import annotations

import base64
import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import NodeProcess, wait_for
from joserfc import jwt
from joserfc.jwk import ECKey

from interop.sso_testkit import check, create_user, running_node

pytestmark = pytest.mark.slow

TRUST_DOMAIN = "courtyard.local"
TARGET_PATH = "/hello"  # the one path the caller declares on the target, GET only
BUS = f"spiffe://{TRUST_DOMAIN}/app/courtyard"  # the control plane's workload: the event bus


def spiffe(app: str) -> str:
    return f"spiffe://{TRUST_DOMAIN}/app/{app}"


MESH_APP = '''
"""A mesh test app: calls the target, publishes, records the events it receives, and shows the
test what its process holds (mesh URL, workload credential) - never do that in a real app."""
import os, pathlib

import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from courtyard.sdk import (
    AsyncMeshClient, EventHandler, IdentityMiddleware, MeshError, from_environment,
)

RECEIVED = []  # ids of the events delivered to /events, in arrival order
FAIL_FLAG = os.environ.get("FAIL_FLAG", "")  # while this file exists, /events answers 500


async def hello(request):
    identity = request.state.identity
    return JSONResponse({"app": os.environ["COURTYARD_APP"], "sub": identity.sub,
                         "act": identity.act, "name": identity.name, "method": request.method})


async def whoami(request):
    identity = request.state.identity
    return JSONResponse({"sub": identity.sub, "assertion": identity.token})


async def go(request):
    query = request.query_params
    on_behalf_of = request.state.identity if query.get("obo", "1") == "1" else None
    async with AsyncMeshClient.from_environment() as mesh:
        try:
            answer = await mesh.call(query.get("service", "target"), query["path"],
                                     method=query.get("method", "GET"), on_behalf_of=on_behalf_of)
        except MeshError as exc:
            return JSONResponse({"status": exc.status, "problem": exc.problem})
    return JSONResponse({"status": answer.status_code, "body": answer.json()})


async def publish(request):
    async with AsyncMeshClient.from_environment() as mesh:
        try:
            event_id = await mesh.publish(request.query_params["topic"],
                                          {"n": request.query_params.get("n")})
        except MeshError as exc:
            return JSONResponse({"status": exc.status, "problem": exc.problem})
    return JSONResponse({"status": 202, "id": event_id})


async def workload(request):
    credential = pathlib.Path(os.environ["COURTYARD_WORKLOAD_CREDENTIAL"]).read_text().strip()
    return JSONResponse({"meshUrl": os.environ["COURTYARD_MESH_URL"], "credential": credential})


def record(event):
    if FAIL_FLAG and os.path.exists(FAIL_FLAG):
        raise RuntimeError("told to fail")
    RECEIVED.append(event.id)


async def received(request):
    return JSONResponse(list(RECEIVED))


async def health(request):
    return JSONResponse({"ok": True})


routes = [
    Route("/hello", hello, methods=["GET", "POST"]),
    Route("/admin", hello),
    Route("/whoami", whoami),
    Route("/go", go),
    Route("/publish", publish),
    Route("/workload", workload),
    Route("/events", EventHandler(record), methods=["POST"]),
    Route("/received", received),
    Route("/healthz", health),
]
app = IdentityMiddleware(Starlette(routes=routes), verifier=from_environment())
uvicorn.run(app, host="127.0.0.1", port=int(os.environ["PORT"]), log_level="warning")
'''


def write_mesh_app(folder: Path, name: str, mesh_spec: str = "", env: str = "{}") -> Path:
    """An app folder running MESH_APP, with ``mesh_spec`` (consumes, publishes, ...) added."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "app.py").write_text(MESH_APP)
    (folder / "courtyard.yaml").write_text(
        f"""\
apiVersion: courtyard.dev/v1alpha1
kind: Application
metadata: {{name: {name}, owner: team-mesh, businessOwner: mesh@example.com}}
spec:
  run:
    command: ["python", "app.py"]
    env: {env}
    health: {{path: /healthz}}
    readyTimeout: 20s
    drainTimeout: 2s
  routes: [{{path: /apps/{name}/}}]
  access: {{public: true}}
{mesh_spec}"""
    )
    return folder


CALLS_TARGET = "  consumes: [{service: target, paths: ['/hello'], methods: [GET]}]\n"


class Mesh:
    """The node under test, a signed-in end user's API token, and what the tests reach."""

    def __init__(self, node: NodeProcess, folder: Path, pat: str, user_id: str) -> None:
        self.node = node
        self.folder = folder
        self.pat = pat
        self.user_id = user_id

    def app_get(self, app: str, route: str, /, **params: str) -> Any:
        """GET /apps/<app><route> through the gateway as the end user, with ``params``."""
        with httpx.Client(base_url=self.node.url, timeout=30) as client:
            answer = client.get(
                f"/apps/{app}{route}",
                params=params,
                headers={"Authorization": f"Bearer {self.pat}"},
            )
        return check(answer, 200)

    def workload(self, app: str) -> dict[str, str]:
        """The mesh URL and workload credential one instance of ``app`` holds."""
        return self.app_get(app, "/workload")  # type: ignore[no-any-return]

    def database(self, *, write: bool = False) -> contextlib.closing[sqlite3.Connection]:
        """The node's SQLite database, read-only unless ``write``; closed after the block."""
        path = self.node.data_dir / "courtyard.db"
        uri = path.as_uri() if write else f"{path.as_uri()}?mode=ro"
        connection = sqlite3.connect(uri, uri=True, timeout=10, isolation_level=None)
        connection.row_factory = sqlite3.Row
        return contextlib.closing(connection)


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    """One node with the demo apps of every test below, and an end user with an API token."""
    folder = tmp_path_factory.mktemp("mesh")
    fail_flag = folder / "broken-fails"
    fail_flag.touch()
    apps = {
        "target": "",
        "caller": CALLS_TARGET + "  publishes: [orders.created, invoices.sent]\n",
        "ledger": "  subscribes: [{topic: orders.created, handler: /events}]\n",
        "bystander": "",  # has an /events handler too, but subscribes to nothing
        "broken": "  subscribes: [{topic: invoices.sent, handler: /events}]\n",
        "shortlived": CALLS_TARGET,
    }
    # Failing deliveries go dead after 3 sends, 0.2 s apart at first (courtyard.toml).
    settings = folder / "courtyard.toml"
    settings.write_text("[node]\nevents_max_attempts = 3\nevents_base_delay = 0.2\n")
    with running_node(folder / "node", extra=["--config", str(settings)]) as node:
        for name, spec in apps.items():
            env = f"{{FAIL_FLAG: {fail_flag}}}" if name == "broken" else "{}"
            node.cli("deploy", str(write_mesh_app(folder / name, name, spec, env)))
        user = create_user(node, "mia@example.com", "Mia Mesh")
        with node.api() as api:
            token = check(
                api.post(f"/api/v1/users/{user.id}/tokens", json={"name": "mesh-e2e"}), 201
            )
        yield Mesh(node, folder, token["token"], user.id)


def mesh_call(url: str, token: str, path: str = f"/target{TARGET_PATH}") -> httpx.Response:
    """A request straight to the mesh listener with ``token`` as the workload credential."""
    return httpx.get(f"{url}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=10)


def is_problem(answer: httpx.Response, status: int) -> bool:
    return (
        answer.status_code == status
        and answer.headers.get("content-type", "").startswith("application/problem+json")
        and answer.json().get("status") == status
    )


# -- declared calls --------------------------------------------------------------------------


def test_a_declared_call_reaches_the_target_as_the_user_acted_for_by_the_caller(
    mesh: Mesh,
) -> None:
    on_behalf = mesh.app_get("caller", "/go", path=TARGET_PATH)
    assert on_behalf["status"] == 200, on_behalf
    assert on_behalf["body"]["app"] == "target"
    assert on_behalf["body"]["sub"] == mesh.user_id
    assert on_behalf["body"]["name"] == "Mia Mesh"
    assert on_behalf["body"]["act"] == spiffe("caller")

    # Without Courtyard-On-Behalf-Of the caller speaks for itself.
    own = mesh.app_get("caller", "/go", path=TARGET_PATH, obo="0")
    assert own["status"] == 200, own
    assert own["body"]["sub"] == spiffe("caller")
    assert own["body"]["act"] == spiffe("caller")


# -- refusals --------------------------------------------------------------------------------


def audit_denials(node: NodeProcess, target: str) -> list[dict[str, Any]]:
    with node.api() as api:
        page = check(
            api.get(
                "/api/v1/audit",
                params={"action": "access.deny", "target": target, "limit": 1000},
            ),
            200,
        )
    return page["entries"]  # type: ignore[no-any-return]


def test_an_undeclared_path_or_method_is_refused_and_audited(mesh: Mesh) -> None:
    path = mesh.app_get("caller", "/go", path="/admin")
    assert path["status"] == 403, path
    assert path["problem"]["status"] == 403
    method = mesh.app_get("caller", "/go", path=TARGET_PATH, method="POST")
    assert method["status"] == 403, method

    def both_audited() -> list[dict[str, Any]] | None:
        entries = [
            entry
            for entry in audit_denials(mesh.node, "app:target")
            if entry["actor"]["id"] == spiffe("caller")
        ]
        seen = {(e["details"]["method"], e["details"]["path"]) for e in entries}
        wanted = {("GET", "/target/admin"), ("POST", f"/target{TARGET_PATH}")}  # mesh paths
        return entries if wanted <= seen else None

    # The workers report denials about once a second.
    entries = wait_for(both_audited, 10, "access.deny entries naming the target")
    for entry in entries:
        assert entry["outcome"] == "denied"
        assert entry["details"]["status"] == 403
        assert entry["actor"]["kind"] == "service"
        assert "target" in entry["reason"], entry["reason"]


def test_credentials_the_mesh_did_not_issue_are_refused(mesh: Mesh) -> None:
    held = mesh.workload("caller")
    url, real = held["meshUrl"], held["credential"]
    assert url.startswith("http://127.0.0.1:"), url
    assert mesh_call(url, real).status_code == 200  # the control: the real one works
    header = json.loads(_b64(real.split(".")[0]))
    claims = json.loads(_b64(real.split(".")[1]))
    assert claims["sub"] == spiffe("caller")
    now = int(time.time())

    # Right claims, right kid, but not our key.
    forged = jwt.encode(header, claims, ECKey.generate_key("P-256", private=True))
    # Our key, right claims, but expired a minute ago (and so never in the mesh's table).
    expired = jwt.encode(
        header, {**claims, "iat": now - 700, "exp": now - 60, "jti": "expired"}, platform_key(mesh)
    )
    # The end user's assertion the caller received, and the end user's API token.
    assertion = mesh.app_get("caller", "/whoami")["assertion"]
    assert assertion.count(".") == 2
    for name, token in {
        "forged": forged,
        "expired": expired,
        "identity assertion": assertion,
        "API token": mesh.pat,
        "node admin token": mesh.node.token,
    }.items():
        answer = mesh_call(url, token)
        assert is_problem(answer, 401), (name, answer.status_code, answer.text[:300])
    no_credential = httpx.get(f"{url}/target{TARGET_PATH}", timeout=10)
    assert is_problem(no_credential, 401), no_credential.text[:300]


def _b64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def platform_key(mesh: Mesh) -> ECKey:
    """The node's active ES256 signing key, read from its database (stored as a plain JWK)."""
    with mesh.database() as db:
        row = db.execute("SELECT ec_jwk FROM signing_keys WHERE state = 'active'").fetchone()
    return ECKey.import_key(json.loads(row["ec_jwk"]))


def test_an_apps_port_refuses_a_request_without_an_assertion(mesh: Mesh) -> None:
    with mesh.node.api() as api:
        instances = check(api.get("/api/v1/apps/target/instances"), 200)
    ports = [instance["port"] for instance in instances if instance["state"] == "ready"]
    assert ports, instances
    for port in ports:
        direct = httpx.get(f"http://127.0.0.1:{port}{TARGET_PATH}", timeout=10)
        assert direct.status_code == 401, direct.text[:300]
        # Nor does the app take the workload credential in place of an assertion.
        held = mesh.workload("caller")["credential"]
        forwarded = httpx.get(
            f"http://127.0.0.1:{port}{TARGET_PATH}",
            headers={"Courtyard-Identity": held},
            timeout=10,
        )
        assert forwarded.status_code == 401, forwarded.text[:300]


def test_a_stopped_apps_credential_stops_working_at_once(mesh: Mesh) -> None:
    held = mesh.workload("shortlived")
    url, credential = held["meshUrl"], held["credential"]
    assert mesh_call(url, credential).status_code == 200

    mesh.node.cli("stop", "shortlived")
    # No wait: the stop returns once the workers have dropped the app's credentials.
    refused = mesh_call(url, credential)
    assert is_problem(refused, 401), (refused.status_code, refused.text[:300])


# -- events ----------------------------------------------------------------------------------


def publish(mesh: Mesh, topic: str, n: int = 0) -> dict[str, Any]:
    return mesh.app_get("caller", "/publish", topic=topic, n=str(n))  # type: ignore[no-any-return]


def test_events_reach_every_subscriber_and_nobody_else(mesh: Mesh) -> None:
    ids = []
    for n in range(3):
        published = publish(mesh, "orders.created", n)
        assert published["status"] == 202, published
        ids.append(published["id"])

    def all_received() -> list[str] | None:
        received = mesh.app_get("ledger", "/received")
        return received if set(ids) <= set(received) else None

    wait_for(all_received, 15, "the subscriber to receive every event")
    # Delivered ones are done: the bystander, which never subscribed, got nothing.
    assert mesh.app_get("bystander", "/received") == []
    assert mesh.app_get("target", "/received") == []

    def states() -> list[dict[str, str]]:
        return [
            {name: row["state"] for name, row in deliveries(mesh, event_id).items()}
            for event_id in ids
        ]

    # Stored for the one subscriber only, and marked delivered once it answered 2xx.
    wait_for(lambda: all(s == {"ledger": "delivered"} for s in states()), 5, "delivered rows")

    refused = publish(mesh, "refunds.issued")  # not in the caller's publishes
    assert refused["status"] == 403, refused
    assert refused["problem"]["status"] == 403
    # A subscriber may not publish what it only receives.
    assert mesh.app_get("ledger", "/publish", topic="orders.created")["status"] == 403


def deliveries(mesh: Mesh, event_id: str) -> dict[str, dict[str, Any]]:
    """The delivery rows of ``event_id`` by subscriber (the API lists only dead ones)."""
    with mesh.database() as db:
        rows = db.execute("SELECT * FROM deliveries WHERE event_id = ?", (event_id,)).fetchall()
    return {row["subscriber"]: dict(row) for row in rows}


def test_a_failing_subscriber_retries_and_a_dead_delivery_redrives(mesh: Mesh) -> None:
    published = publish(mesh, "invoices.sent", 1)
    assert published["status"] == 202, published
    event_id = published["id"]

    # The handler answers 500: the delivery is tried again with backoff.
    retried = wait_for(
        lambda: (row := deliveries(mesh, event_id)["broken"])["attempts"] >= 2 and row,
        15,
        "a second delivery attempt",
    )
    assert retried["state"] in ("pending", "dead"), retried
    assert retried["last_error"], retried
    assert mesh.app_get("broken", "/received") == []

    # After its third failed send the delivery is dead-lettered.
    wait_for(lambda: deliveries(mesh, event_id)["broken"]["state"] == "dead", 15, "the dead letter")
    dead = json.loads(mesh.node.cli("events", "dead", "--topic", "invoices.sent", "--json").stdout)
    assert [(d["id"], d["subscriber"], d["handler"]) for d in dead] == [
        (event_id, "broken", "/events")
    ]
    assert dead[0]["publisher"] == "caller"
    assert dead[0]["attempts"] >= 2

    (mesh.folder / "broken-fails").unlink()  # the subscriber is mended
    redriven = json.loads(mesh.node.cli("events", "redrive", event_id, "--json").stdout)
    assert redriven == {"redriven": 1}
    wait_for(lambda: event_id in mesh.app_get("broken", "/received"), 15, "the redriven delivery")
    assert json.loads(mesh.node.cli("events", "dead", "--json").stdout) == []


# -- the dependency graph --------------------------------------------------------------------


def test_the_graph_marks_the_declared_call_as_seen(mesh: Mesh) -> None:
    assert mesh.app_get("caller", "/go", path=TARGET_PATH)["status"] == 200

    def edges() -> dict[tuple[str, str, str], dict[str, Any]] | None:
        document = json.loads(mesh.node.cli("graph", "--format", "json").stdout)
        found = {(e["from"], e["to"], e["kind"]): e for e in document["edges"]}
        call = found.get(("caller", "target", "call"))
        return found if call is not None and call["seen"] else None

    # The workers report the edges they used about once a second.
    found = wait_for(edges, 10, "the caller -> target edge marked seen")
    call = found[("caller", "target", "call")]
    assert call["declared"] and not call["refused_by_target"], call
    publish_edge = found[("caller", "orders.created", "publish")]
    assert publish_edge["declared"], publish_edge
    subscribe_edge = found[("orders.created", "ledger", "subscribe")]
    assert subscribe_edge["declared"], subscribe_edge
    # Events were published and delivered to ledger (an earlier test, or this one's publish):
    # a 2xx delivery marks its subscribe edge seen.
    publish(mesh, "orders.created", 1)
    seen = wait_for(
        lambda: next(
            (
                e
                for e in json.loads(mesh.node.cli("graph", "--format", "json").stdout)["edges"]
                if (e["from"], e["to"], e["kind"]) == ("orders.created", "ledger", "subscribe")
                and e["seen"]
            ),
            None,
        ),
        15,
        "the subscribe edge marked seen",
    )
    assert seen["declared"]
    assert not any("bystander" in (e[0], e[1]) for e in found)  # it declares nothing
