"""The mesh listener over real sockets: workload credentials from the table only, declared calls
only (default deny), the identity the target sees (``act``, and the end user on whose behalf),
deadlines, publishing, and the usage the worker reports."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import replace

import gateway_testkit as kit
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet

from courtyard.contracts import (
    MESH_AUDIENCE,
    TRACES_PATH,
    AccessPolicy,
    GatewayCredential,
    GatewaySnapshot,
    IdentityClaims,
    MeshPolicy,
    spiffe_id,
)
from courtyard.gateway import Gateway, GatewayConfig
from courtyard.gateway._worker import access_gate

KEYS = kit.Keys()
AUTH = KEYS.auth()
DOMAIN = "courtyard.test"
SESSION = "s3ss10n-secret"


def _policy(
    consumes: list[tuple[str, list[str], list[str]]] | None = None,
    *,
    accepts: list[tuple[str, list[str], list[str]]] | None = None,
    publishes: list[str] | None = None,
    subscribes: list[tuple[str, str]] | None = None,
) -> MeshPolicy:
    return {
        "consumes": [{"service": s, "paths": p, "methods": m} for s, p, m in (consumes or [])],
        "accepts": None
        if accepts is None
        else [{"caller": c, "paths": p, "methods": m} for c, p, m in accepts],
        "publishes": publishes or [],
        "subscribes": [{"topic": t, "handler": h} for t, h in (subscribes or [])],
    }


POLICIES: dict[str, MeshPolicy] = {
    "orders": _policy(
        [
            ("books", ["/entries/**"], ["GET", "POST"]),
            ("reports", ["/**"], ["*"]),
            ("idle", ["/**"], ["*"]),
        ],
        publishes=["orders.created"],
    ),
    "books": _policy(subscribes=[("orders.created", "/events/orders")]),
    "reports": _policy(accepts=[("books", ["/**"], ["GET"])]),
    "idle": _policy(),
}


def _snapshot(upstream: kit.Upstream, *, mesh: bool = True) -> GatewaySnapshot:
    members = [upstream.instance()]
    snapshot = kit.snapshot(
        1,
        [kit.route("books", "/apps/books/"), kit.route("courtyard", "/api/", strip_prefix=False)],
        {"orders": members, "books": members, "reports": members, "idle": [], "courtyard": members},
        access={
            "books": AccessPolicy(public=False, allow=["group:finance"]),
            "orders": AccessPolicy(public=False, allow=[]),
            "reports": AccessPolicy(public=False, allow=[]),
            "idle": AccessPolicy(public=False, allow=[]),
        },
        auth=AUTH,
    )
    for name, policy in POLICIES.items():
        snapshot["apps"][name]["mesh"] = policy
    if mesh:
        snapshot["mesh"] = {
            "trust_domain": DOMAIN,
            "events_app": "courtyard",
            "events_path": "/internal/events/",
            "traces_path": TRACES_PATH,
        }
    return snapshot


def workload_token(app: str, *, key: ECKey | None = None, exp: float | None = None) -> str:
    """A workload JWT as the node issues it (what the gateway checks is only the table)."""
    now = int(time.time())
    signer = key or KEYS.signing
    claims = {
        "iss": kit.ISSUER,
        "sub": spiffe_id(DOMAIN, app),
        "aud": MESH_AUDIENCE,
        "iat": now,
        "exp": int(exp if exp is not None else now + 600),
        "jti": f"w-{app}-{now}",
    }
    return jwt.encode({"alg": "ES256", "typ": "JWT", "kid": signer.kid}, claims, signer)


def workload(token: str, app: str, *, expires_at: float = 4_000_000_000.0) -> GatewayCredential:
    return GatewayCredential(
        key=kit.key_of(token),
        kind="workload",
        identity=IdentityClaims(
            sub=spiffe_id(DOMAIN, app), email="", name=app, groups=[], roles=[]
        ),
        app_roles={},
        expires_at=expires_at,
        app=app,
    )


def user_assertion(
    aud: str, *, key: ECKey | None = None, exp: float | None = None, typ: str = "JWT"
) -> str:
    """A Courtyard-Identity as the gateway signs it for ``aud``."""
    now = int(time.time())
    signer = key or KEYS.signing
    claims = {
        "iss": kit.ISSUER,
        "aud": aud,
        "iat": now,
        "exp": int(exp if exp is not None else now + 60),
        "sub": "u_00000000000000dd",
        "email": "dana@example.com",
        "name": "Dana",
        "groups": ["finance"],
        "roles": ["auditor", "owner"],
    }
    return jwt.encode({"alg": "ES256", "typ": typ, "kid": signer.kid}, claims, signer)


ORDERS = workload_token("orders")
BOOKS = workload_token("books")
CONTROL = workload_token("courtyard")
STALE = workload_token("orders", exp=time.time() - 5)


@pytest.fixture
async def mesh(upstream: kit.Upstream, config: GatewayConfig) -> AsyncIterator[Gateway]:
    gw = Gateway(config)
    gw.apply(_snapshot(upstream))
    await gw.start("127.0.0.1", 0)
    await gw.start_mesh("127.0.0.1", 0)
    access_gate(gw).apply_credentials(
        kit.credentials(
            workload(ORDERS, "orders"),
            workload(BOOKS, "books"),
            workload(CONTROL, "courtyard"),
            workload(STALE, "orders", expires_at=time.time() - 5),
            kit.credential(SESSION, groups=["finance"]),
            full=True,
        )
    )
    yield gw
    await gw.aclose(0.5)


def _mesh_port(gateway: Gateway) -> int:
    return gateway.mesh_addresses[0][1]


async def call(
    gateway: Gateway,
    target: str,
    token: str | None = ORDERS,
    *,
    method: str = "GET",
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
) -> kit.Response:
    items = list(headers or [])
    if token is not None:
        items.append(("Authorization", f"Bearer {token}"))
    return await kit.request(_mesh_port(gateway), target, method=method, headers=items, body=body)


def _identity(seen: kit.Request) -> dict[str, object]:
    (value,) = seen.header_all("courtyard-identity")
    token = jwt.decode(value, KeySet.import_key_set(KEYS.jwks()))  # type: ignore[arg-type]
    return token.claims


def _denials(gateway: Gateway) -> list[tuple[str, int, str, str]]:
    denials = access_gate(gateway).usage.denials
    return [(d["app"], d["status"], d["subject"], d["reason"]) for d in denials]


# -- declared calls ----------------------------------------------------------------------------


async def test_a_declared_call_reaches_the_target_as_the_calling_workload(
    mesh: Gateway, upstream: kit.Upstream
) -> None:
    response = await call(
        mesh, "/books/entries/7?full=1", headers=[("Cookie", f"courtyard_session={SESSION}")]
    )
    assert response.status == 200
    seen = response.echoed()
    assert seen.target == "/entries/7?full=1"
    assert seen.header("x-forwarded-prefix") == "/books"
    assert seen.header("authorization") is None
    assert seen.header("cookie") is None
    claims = _identity(seen)
    assert claims["aud"] == "books" and claims["iss"] == kit.ISSUER
    assert claims["act"] == {"sub": spiffe_id(DOMAIN, "orders")}
    assert claims["sub"] == spiffe_id(DOMAIN, "orders")
    assert (claims["email"], claims["name"], claims["groups"], claims["roles"]) == (
        "",
        "orders",
        [],
        [],
    )
    assert 0 < int(str(claims["exp"])) - int(str(claims["iat"])) <= 60
    assert ORDERS.encode() not in bytes(upstream.received)
    assert _denials(mesh) == []


async def test_on_behalf_of_the_user_the_target_sees_the_user_and_the_caller(
    mesh: Gateway, upstream: kit.Upstream
) -> None:
    assertion = user_assertion("orders")
    response = await call(
        mesh, "/books/entries/", method="POST", headers=[("Courtyard-On-Behalf-Of", assertion)]
    )
    assert response.status == 200
    seen = response.echoed()
    claims = _identity(seen)
    assert claims["sub"] == "u_00000000000000dd"
    assert claims["email"] == "dana@example.com" and claims["groups"] == ["finance"]
    assert claims["roles"] == ["auditor"]  # the role in the calling app does not travel
    assert claims["act"] == {"sub": spiffe_id(DOMAIN, "orders")}
    assert claims["aud"] == "books"
    assert seen.header("courtyard-on-behalf-of") is None
    assert assertion.encode() not in bytes(upstream.received)


@pytest.mark.parametrize(
    "assertion",
    [
        pytest.param(user_assertion("books"), id="issued-to-another-app"),
        pytest.param(user_assertion("orders", exp=time.time() - 1), id="expired"),
        pytest.param(user_assertion("orders", key=KEYS.other), id="unknown-key"),
        pytest.param(user_assertion("orders", typ="at+jwt"), id="not-an-assertion"),
        pytest.param("not-a-jwt", id="garbage"),
    ],
)
async def test_an_assertion_that_is_not_the_callers_asserts_no_user(
    assertion: str, mesh: Gateway
) -> None:
    response = await call(mesh, "/books/entries/1", headers=[("Courtyard_On_Behalf_Of", assertion)])
    assert response.status == 200
    seen = response.echoed()
    claims = _identity(seen)
    assert claims["sub"] == spiffe_id(DOMAIN, "orders")
    assert claims["act"] == {"sub": spiffe_id(DOMAIN, "orders")}
    assert seen.header("courtyard_on_behalf_of") is None


@pytest.mark.parametrize("name", ["Courtyard-Identity", "courtyard-identity", "COURTYARD_IDENTITY"])
async def test_a_client_sent_identity_never_reaches_the_target(
    name: str, mesh: Gateway, upstream: kit.Upstream
) -> None:
    forged = user_assertion("books")
    response = await call(mesh, "/books/entries/1", headers=[(name, forged)])
    claims = _identity(response.echoed())
    assert claims["sub"] == spiffe_id(DOMAIN, "orders")
    assert forged.encode() not in bytes(upstream.received)


# -- refusals -----------------------------------------------------------------------------------


async def test_an_undeclared_path_is_403_and_a_denial(
    mesh: Gateway, upstream: kit.Upstream
) -> None:
    response = await call(mesh, "/books/admin/wipe")
    assert response.status == 403
    assert response.header("content-type") == "application/problem+json"
    assert upstream.requests == []
    ((app, status, subject, reason),) = _denials(mesh)
    assert (app, status, subject) == ("books", 403, spiffe_id(DOMAIN, "orders"))
    assert "does not declare" in reason
    denial = access_gate(mesh).usage.denials[0]
    assert (denial["method"], denial["path"]) == ("GET", "/books/admin/wipe")


async def test_an_undeclared_method_is_403(mesh: Gateway, upstream: kit.Upstream) -> None:
    response = await call(mesh, "/books/entries/1", method="DELETE")
    assert response.status == 403
    assert upstream.requests == []
    assert "DELETE" in _denials(mesh)[0][3]


async def test_a_target_that_does_not_accept_the_caller_refuses_it(
    mesh: Gateway, upstream: kit.Upstream
) -> None:
    response = await call(mesh, "/reports/summary")
    assert response.status == 403
    assert "accepts" in _denials(mesh)[0][3]
    allowed = await call(mesh, "/reports/summary", token=BOOKS)
    assert allowed.status == 403  # books accepted by reports but never declared the call
    assert len(upstream.requests) == 0


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        pytest.param(None, "no workload credential", id="none"),
        pytest.param(workload_token("orders", key=KEYS.other), "unknown", id="forged"),
        pytest.param(STALE, "expired", id="expired"),
        pytest.param(user_assertion("orders"), "unknown", id="identity-assertion"),
        pytest.param(KEYS.access_token(now=time.time()), "unknown", id="access-token"),
        pytest.param(SESSION, "not a workload credential", id="session-secret"),
    ],
)
async def test_anything_but_a_live_workload_credential_is_401(
    token: str | None, reason: str, mesh: Gateway, upstream: kit.Upstream
) -> None:
    response = await call(mesh, "/books/entries/1", token)
    assert response.status == 401
    assert (response.header("www-authenticate") or "").startswith('Bearer realm="courtyard-mesh"')
    assert upstream.requests == []
    ((app, status, subject, why),) = _denials(mesh)
    assert (app, status, subject) == ("books", 401, "-")
    assert reason in why


async def test_a_revoked_workload_credential_stops_working_at_once(mesh: Gateway) -> None:
    assert (await call(mesh, "/books/entries/1")).status == 200
    access_gate(mesh).apply_credentials(kit.credentials(revoke=[kit.key_of(ORDERS)]))
    assert (await call(mesh, "/books/entries/1")).status == 401


async def test_unknown_services_are_404_and_services_without_instances_503(
    mesh: Gateway,
) -> None:
    assert (await call(mesh, "/nowhere/x")).status == 404
    assert (await call(mesh, "/")).status == 404
    idle = await call(mesh, "/idle/x")
    assert idle.status == 503
    assert idle.header("retry-after") == "1"


async def test_the_control_plane_may_call_apps_only_through_the_mesh_policy(
    mesh: Gateway,
) -> None:
    # The built-in app has no mesh policy: apps may not call it, except to publish.
    assert (await call(mesh, "/courtyard/api/apps")).status == 403


# -- deadlines ----------------------------------------------------------------------------------


async def test_a_deadline_already_past_is_504_at_once(
    mesh: Gateway, upstream: kit.Upstream
) -> None:
    past = str(int((time.time() - 10) * 1000))
    response = await call(mesh, "/books/entries/1", headers=[("Courtyard-Deadline", past)])
    assert response.status == 504
    assert upstream.requests == []


async def test_a_future_deadline_is_forwarded_unchanged(mesh: Gateway) -> None:
    later = str(int((time.time() + 30) * 1000))
    response = await call(mesh, "/books/entries/1", headers=[("Courtyard-Deadline", later)])
    assert response.status == 200
    assert response.echoed().header_all("courtyard-deadline") == [later]


async def test_the_deadline_bounds_the_wait_for_the_answer(
    mesh: Gateway, upstream: kit.Upstream
) -> None:
    soon = str(int((time.time() + 0.2) * 1000))
    response = await call(mesh, "/books/entries/hold", headers=[("Courtyard-Deadline", soon)])
    assert response.status == 504  # the route would wait 5 s
    upstream.release()


async def test_a_malformed_or_repeated_deadline_is_400(mesh: Gateway) -> None:
    bad = await call(mesh, "/books/entries/1", headers=[("Courtyard-Deadline", "soon")])
    assert bad.status == 400
    later = str(int((time.time() + 30) * 1000))
    twice = await call(
        mesh,
        "/books/entries/1",
        headers=[("Courtyard-Deadline", later), ("Courtyard-Deadline", later)],
    )
    assert twice.status == 400


# -- events -------------------------------------------------------------------------------------


async def test_a_declared_topic_is_published_to_the_events_app(mesh: Gateway) -> None:
    response = await call(mesh, "/_events/orders.created", method="POST", body=b'{"id": 1}')
    assert response.status == 200
    seen = response.echoed()
    assert seen.target == "/internal/events/orders.created"
    assert seen.body == b'{"id": 1}'
    assert seen.header("x-forwarded-prefix") is None
    claims = _identity(seen)
    assert claims["aud"] == "courtyard"
    assert claims["sub"] == claims["act"]["sub"] == spiffe_id(DOMAIN, "orders")  # type: ignore[index]


async def test_publishing_an_undeclared_topic_is_refused(
    mesh: Gateway, upstream: kit.Upstream
) -> None:
    refused = await call(mesh, "/_events/books.sold", method="POST", body=b"{}")
    assert refused.status == 403
    ((app, status, subject, reason),) = _denials(mesh)
    assert (app, status, subject) == ("courtyard", 403, spiffe_id(DOMAIN, "orders"))
    assert "publishes" in reason
    assert (await call(mesh, "/_events/orders.created")).status == 405
    assert (await call(mesh, "/_events/", method="POST")).status == 404
    assert upstream.requests == []


async def test_the_control_plane_delivers_only_to_subscribed_handlers(mesh: Gateway) -> None:
    delivered = await call(mesh, "/books/events/orders", CONTROL, method="POST", body=b"{}")
    assert delivered.status == 200
    claims = _identity(delivered.echoed())
    assert claims["act"] == {"sub": spiffe_id(DOMAIN, "courtyard")}
    assert (await call(mesh, "/books/entries/1", CONTROL, method="POST")).status == 403
    assert (await call(mesh, "/books/events/orders", CONTROL)).status == 403


# -- usage and isolation ------------------------------------------------------------------------


async def test_used_edges_are_reported_once(mesh: Gateway) -> None:
    await call(mesh, "/books/entries/1")
    await call(mesh, "/books/entries/2")
    await call(mesh, "/_events/orders.created", method="POST", body=b"{}")
    await call(mesh, "/books/nope")  # refused: no edge
    await call(mesh, "/books/events/orders", CONTROL, method="POST")  # a delivery: no edge
    message, _ = access_gate(mesh).usage.take(3)
    assert message is not None
    assert message["edges"] == ["orders>_events/orders.created", "orders>books"]
    later, _ = access_gate(mesh).usage.take(3)
    assert later is None


async def test_the_public_port_neither_routes_the_mesh_nor_takes_workload_credentials(
    mesh: Gateway, upstream: kit.Upstream
) -> None:
    public = mesh.addresses[0][1]
    bearer = [("Authorization", f"Bearer {ORDERS}")]
    assert (await kit.request(public, "/books/entries/1", headers=bearer)).status == 404
    assert (
        await kit.request(public, "/_events/orders.created", method="POST", headers=bearer)
    ).status == 404
    refused = await kit.request(public, "/apps/books/", headers=bearer)
    assert refused.status == 401
    typed = KEYS.access_token(now=time.time(), aud=MESH_AUDIENCE, sub=spiffe_id(DOMAIN, "orders"))
    assert (
        await kit.request(public, "/apps/books/", headers=[("Authorization", f"Bearer {typed}")])
    ).status == 401
    assert upstream.requests == []


async def test_without_mesh_settings_the_listener_answers_503(
    upstream: kit.Upstream, config: GatewayConfig
) -> None:
    gw = Gateway(config)
    gw.apply(_snapshot(upstream, mesh=False))
    await gw.start_mesh("127.0.0.1", 0)
    try:
        response = await call(gw, "/books/entries/1")
        assert response.status == 503
        health = await call(gw, "/healthz", None)
        assert health.status == 200
    finally:
        await gw.aclose(0.5)


async def test_mesh_calls_use_the_targets_route_limits(
    upstream: kit.Upstream, config: GatewayConfig
) -> None:
    snapshot = _snapshot(upstream)
    snapshot["routes"][0] = kit.route("books", "/apps/books/", max_body_bytes=4)
    gw = Gateway(config)
    gw.apply(snapshot)
    await gw.start_mesh("127.0.0.1", 0)
    access_gate(gw).apply_credentials(kit.credentials(workload(ORDERS, "orders"), full=True))
    try:
        response = await call(gw, "/books/entries/1", method="POST", body=b"too long")
        assert response.status == 413
    finally:
        await gw.aclose(0.5)


# -- telemetry ----------------------------------------------------------------------------------

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


async def test_mesh_calls_are_mesh_metrics_not_gateway_requests(mesh: Gateway) -> None:
    await call(mesh, "/books/entries/1")
    await call(mesh, "/books/entries/2")
    await call(mesh, "/books/status/503")  # undeclared path: 403, still a mesh call
    await call(mesh, "/books/entries/1", None)  # no credential: caller unknown
    await call(mesh, "/nowhere/x")
    metrics = mesh.metrics()
    assert metrics["requests"] == {} and metrics["latency"] == {}
    assert metrics.get("mesh") == {
        "orders>books|2xx": 2,
        "orders>books|4xx": 1,
        "->books|4xx": 1,
        "orders>-|4xx": 1,  # an unknown service is "-" (bounded labels)
    }
    assert metrics.get("mesh_latency", {})["orders>books"]["count"] == 3


async def test_a_mesh_hop_is_a_span_of_the_callers_trace(mesh: Gateway) -> None:
    headers = [("traceparent", f"00-{TRACE}-{PARENT}-01"), ("X-Request-Id", "m-1")]
    response = await call(mesh, "/books/entries/1", headers=headers)
    _, trace, span, flags = response.echoed().header("traceparent").split("-")
    assert (trace, flags) == (TRACE, "01") and span != PARENT
    (record,), dropped = mesh.take_spans()
    assert dropped == 0
    assert (record["trace_id"], record["span_id"], record["parent_id"]) == (TRACE, span, PARENT)
    assert (record["service"], record["kind"], record["name"]) == ("mesh", "server", "GET books")
    assert record.get("attributes") == {
        "caller": "orders",
        "target": "books",
        "request_id": "m-1",
        "instance": "a",
    }


async def test_an_apps_spans_are_forwarded_to_the_control_plane(mesh: Gateway) -> None:
    body = b'{"spans": []}'
    headers = [("traceparent", f"00-{TRACE}-{PARENT}-01")]
    response = await call(mesh, "/_traces", method="POST", body=body, headers=headers)
    assert response.status == 200
    seen = response.echoed()
    assert seen.target == TRACES_PATH and seen.body == body
    assert seen.header("x-forwarded-prefix") is None
    claims = _identity(seen)
    assert claims["aud"] == "courtyard"
    assert claims["sub"] == claims["act"]["sub"] == spiffe_id(DOMAIN, "orders")  # type: ignore[index]
    assert mesh.take_spans() == ([], 0)  # the report itself is not traced
    assert mesh.metrics().get("mesh") == {"orders>_traces|2xx": 1}


async def test_only_an_authenticated_post_to_traces_is_forwarded(
    mesh: Gateway, upstream: kit.Upstream
) -> None:
    assert (await call(mesh, "/_traces", None, method="POST", body=b"{}")).status == 401
    assert (await call(mesh, "/_traces", STALE, method="POST", body=b"{}")).status == 401
    wrong = await call(mesh, "/_traces")
    assert wrong.status == 405 and wrong.header("allow") == "POST"
    assert (await call(mesh, "/_traces/more", method="POST", body=b"{}")).status == 404
    assert upstream.requests == []


async def test_without_a_traces_path_the_mesh_keeps_no_traces(
    upstream: kit.Upstream, config: GatewayConfig
) -> None:
    snapshot = _snapshot(upstream)
    assert "mesh" in snapshot
    del snapshot["mesh"]["traces_path"]
    gw = Gateway(config)
    gw.apply(snapshot)
    await gw.start_mesh("127.0.0.1", 0)
    access_gate(gw).apply_credentials(kit.credentials(workload(ORDERS, "orders"), full=True))
    try:
        response = await call(gw, "/_traces", method="POST", body=b"{}")
        assert response.status == 404
        assert response.header("content-type") == "application/problem+json"
        assert upstream.requests == []
    finally:
        await gw.aclose(0.5)


async def test_telemetry_off_counts_no_mesh_calls(
    upstream: kit.Upstream, config: GatewayConfig
) -> None:
    gw = Gateway(replace(config, telemetry=False))
    gw.apply(_snapshot(upstream))
    await gw.start_mesh("127.0.0.1", 0)
    access_gate(gw).apply_credentials(kit.credentials(workload(ORDERS, "orders"), full=True))
    try:
        headers = [("traceparent", f"00-{TRACE}-{PARENT}-01")]
        response = await call(gw, "/books/status/500", headers=headers)
        assert response.status == 403
        assert (await call(gw, "/books/entries/1", headers=headers)).status == 200
        assert gw.metrics().get("mesh", {}) == {} and gw.take_spans() == ([], 0)
    finally:
        await gw.aclose(0.5)
