"""IdentityMiddleware around a Starlette app, driven in process through httpx.ASGITransport."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from courtyard.sdk import (
    IdentityMiddleware,
    IdentityVerifier,
    JwksCache,
    scope_identity,
)
from courtyard.sdk.testing import IdentityMinter, ManualClock


async def whoami(request: Request) -> Response:
    identity = request.state.identity
    assert identity is scope_identity(request.scope)
    if identity is None:
        return JSONResponse({"anonymous": True})
    return JSONResponse({"sub": identity.sub, "name": identity.name, "act": identity.act})


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def _app(verifier: IdentityVerifier, *, required: bool = True) -> IdentityMiddleware:
    inner = Starlette(routes=[Route("/", whoami), Route("/healthz", healthz)])
    return IdentityMiddleware(inner, verifier, required=required)


@pytest.fixture
async def client(minter: IdentityMinter) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=_app(minter.verifier()))
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
        yield http


async def test_the_caller_reaches_the_app(
    client: httpx.AsyncClient, minter: IdentityMinter
) -> None:
    response = await client.get("/", headers=minter.headers(name="Dana", act="svc:ledger"))
    assert response.status_code == 200
    assert response.json() == {"sub": "u_test", "name": "Dana", "act": "svc:ledger"}


async def test_no_assertion_gets_a_401_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Courtyard-Identity")
    assert response.json() == {
        "type": "about:blank",
        "title": "Unauthorized",
        "status": 401,
        "detail": "the request carries no Courtyard-Identity assertion",
    }


async def test_a_bad_assertion_gets_a_401_saying_why(
    client: httpx.AsyncClient, minter: IdentityMinter, now: ManualClock
) -> None:
    token = minter.mint()
    now.advance(120)
    response = await client.get("/", headers={"Courtyard-Identity": token})
    assert response.status_code == 401
    assert response.json()["detail"] == "invalid Courtyard-Identity assertion: expired"


async def test_two_assertions_are_refused(
    client: httpx.AsyncClient, minter: IdentityMinter
) -> None:
    headers = [("Courtyard-Identity", minter.mint()), ("Courtyard-Identity", minter.mint())]
    response = await client.get("/", headers=headers)
    assert response.status_code == 401


async def test_the_health_check_needs_no_assertion(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


async def test_optional_identity_lets_anonymous_callers_in_but_not_bad_ones(
    minter: IdentityMinter, now: ManualClock
) -> None:
    transport = httpx.ASGITransport(app=_app(minter.verifier(), required=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
        assert (await http.get("/")).json() == {"anonymous": True}
        assert (await http.get("/", headers=minter.headers(name="Li"))).json()["name"] == "Li"
        stale = minter.mint()
        now.advance(120)
        assert (await http.get("/", headers={"Courtyard-Identity": stale})).status_code == 401


async def test_an_unreachable_jwks_gets_a_503(now: ManualClock, minter: IdentityMinter) -> None:
    down = httpx.MockTransport(lambda request: httpx.Response(502))
    cache = JwksCache("http://platform.test/oauth2/jwks", clock=now, async_transport=down)
    verifier = IdentityVerifier(minter.issuer, minter.audience, jwks=cache, clock=now)
    transport = httpx.ASGITransport(app=_app(verifier))
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
        response = await http.get("/", headers=minter.headers())
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert "verify" in response.json()["detail"]


async def test_lifespan_and_other_scopes_pass_through(minter: IdentityMinter) -> None:
    seen: list[str] = []

    async def inner(scope: object, receive: object, send: object) -> None:
        assert isinstance(scope, dict)
        seen.append(scope["type"])

    async def nothing() -> dict[str, str]:
        return {}

    async def ignore(message: object) -> None:
        return None

    middleware = IdentityMiddleware(inner, minter.verifier())
    await middleware({"type": "lifespan"}, nothing, ignore)
    assert seen == ["lifespan"]


async def test_a_websocket_without_assertion_is_closed_before_accepting(
    minter: IdentityMinter,
) -> None:
    sent: list[dict[str, object]] = []

    async def inner(scope: object, receive: object, send: object) -> None:
        raise AssertionError("the app must not run")

    async def receive() -> dict[str, str]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    middleware = IdentityMiddleware(inner, minter.verifier())
    await middleware({"type": "websocket", "path": "/ws", "headers": []}, receive, send)  # type: ignore[arg-type]
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": "identity required"}]
