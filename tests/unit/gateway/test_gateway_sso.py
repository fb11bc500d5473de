"""Single sign-on through the proxy over real sockets: what apps receive (an assertion they can
verify, never a spoofed one, never the platform's credentials), what callers get when they
may not pass, and credentials and usage over the control channel."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import gateway_testkit as kit
import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from courtyard.contracts import AccessPolicy, CredentialsMessage, GatewaySnapshot, UsageMessage
from courtyard.gateway import Gateway, GatewayConfig
from courtyard.gateway._tls import ensure_dev_certificate
from courtyard.gateway._worker import access_gate, report_usage
from courtyard.transport import ControlClient, ControlServer

KEYS = kit.Keys()
AUTH = KEYS.auth()
SESSION = "s3ss10n-secret"
PAT = "cy_pat_0123456789abcdef"
BROWSER = "text/html,application/xhtml+xml,*/*;q=0.8"


def _snapshot(upstream: kit.Upstream, version: int = 1) -> GatewaySnapshot:
    routes = [
        kit.route("books", "/apps/books/"),
        kit.route("blog", "/apps/blog/"),
        kit.route("courtyard", "/api/", strip_prefix=False),
    ]
    members = [upstream.instance()]
    return kit.snapshot(
        version,
        routes,
        {"books": members, "blog": members, "courtyard": members},
        access={
            "books": AccessPolicy(public=False, allow=["group:finance"]),
            "blog": AccessPolicy(public=True, allow=[]),
            "courtyard": AccessPolicy(public=True, allow=[]),
        },
        auth=AUTH,
    )


def _credentials() -> CredentialsMessage:
    return kit.credentials(
        kit.credential(SESSION, groups=["finance"]),
        kit.credential("outsider", sub="u_00000000000000cc"),
        kit.credential(PAT, kind="token", groups=["finance"]),
        full=True,
    )


@pytest.fixture
async def sso(upstream: kit.Upstream, config: GatewayConfig) -> AsyncIterator[Gateway]:
    gw = Gateway(config)
    gw.apply(_snapshot(upstream))
    await gw.start("127.0.0.1", 0)
    access_gate(gw).apply_credentials(_credentials())
    yield gw
    await gw.aclose(0.5)


def _port(gateway: Gateway) -> int:
    return gateway.addresses[0][1]


def _assertion(seen: kit.Request) -> dict[str, object]:
    (value,) = seen.header_all("courtyard-identity")
    token = jwt.decode(value, KeySet.import_key_set(KEYS.jwks()))  # type: ignore[arg-type]
    assert token.header["typ"] == "JWT"
    return token.claims


@pytest.mark.parametrize(
    "name",
    ["Courtyard-Identity", "courtyard-identity", "COURTYARD-IDENTITY", "courtyard_identity"],
)
async def test_a_spoofed_identity_never_reaches_the_app(
    name: str, sso: Gateway, upstream: kit.Upstream
) -> None:
    forged = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9."
    for app in ("books", "blog"):
        response = await kit.request(
            _port(sso),
            f"/apps/{app}/",
            headers=[
                (name, forged),
                ("Courtyard-Identity", forged),
                ("Cookie", f"courtyard_session={SESSION}"),
            ],
        )
        assert response.status == 200
        assert _assertion(response.echoed())["sub"] == "u_00000000000000bb"
    public = await kit.request(_port(sso), "/apps/blog/", headers=[(name, forged)])
    assert public.echoed().header("courtyard-identity") is None
    assert forged.encode() not in bytes(upstream.received)


async def test_the_app_gets_a_verifiable_assertion_and_no_platform_credential(
    sso: Gateway, upstream: kit.Upstream
) -> None:
    response = await kit.request(
        _port(sso),
        "/apps/books/x",
        headers=[("Cookie", f"lang=en; courtyard_session={SESSION}; cart=3")],
    )
    seen = response.echoed()
    claims = _assertion(seen)
    assert claims["iss"] == kit.ISSUER and claims["aud"] == "books"
    assert claims["groups"] == ["finance"]
    assert 0 < int(str(claims["exp"])) - int(str(claims["iat"])) <= 60
    assert seen.header_all("cookie") == ["lang=en; cart=3"]
    with_pat = (
        await kit.request(_port(sso), "/apps/books/", headers={"Authorization": f"Bearer {PAT}"})
    ).echoed()
    assert with_pat.header("authorization") is None
    assert _assertion(with_pat)["sub"] == "u_00000000000000bb"
    token = KEYS.access_token(now=time.time())
    with_jwt = (
        await kit.request(_port(sso), "/apps/books/", headers={"Authorization": f"Bearer {token}"})
    ).echoed()
    assert with_jwt.header("authorization") is None
    assert _assertion(with_jwt)["sub"] == "u_00000000000000aa"
    assert SESSION.encode() not in bytes(upstream.received)
    assert PAT.encode() not in bytes(upstream.received)


async def test_the_control_plane_keeps_its_credentials_and_gets_no_assertion(
    sso: Gateway,
) -> None:
    seen = (
        await kit.request(
            _port(sso),
            "/api/me",
            headers=[
                ("Cookie", f"courtyard_session={SESSION}"),
                ("Authorization", f"Bearer {PAT}"),
            ],
        )
    ).echoed()
    assert seen.header_all("cookie") == [f"courtyard_session={SESSION}"]
    assert seen.header_all("authorization") == [f"Bearer {PAT}"]
    assert seen.header("courtyard-identity") is None


async def test_browsers_are_sent_to_sign_in_api_clients_get_401(sso: Gateway) -> None:
    browser = await kit.request(_port(sso), "/apps/books/a?b=1&c=2", headers={"Accept": BROWSER})
    assert browser.status == 302
    assert browser.header("location") == "/login?next=/apps/books/a%3Fb%3D1%26c%3D2"
    assert browser.header("cache-control") == "no-store"
    api = await kit.request(_port(sso), "/apps/books/a", headers={"Accept": "application/json"})
    assert api.status == 401
    assert api.header("www-authenticate") == 'Bearer realm="courtyard"'
    assert api.header("content-type") == "application/problem+json"
    dead = await kit.request(
        _port(sso), "/apps/books/", headers={"Authorization": "Bearer cy_pat_revoked"}
    )
    assert dead.status == 401
    assert dead.header("www-authenticate") == 'Bearer realm="courtyard", error="invalid_token"'
    assert b"cy_pat_revoked" not in dead.raw
    public = await kit.request(_port(sso), "/apps/blog/", headers={"Accept": BROWSER})
    assert public.status == 200


async def test_forbidden_and_denials_reach_the_control_plane(
    sso: Gateway, upstream: kit.Upstream
) -> None:
    usage: list[UsageMessage] = []
    server = ControlServer("t", on_usage=usage.append)
    host, port = await server.start()
    client = ControlClient(host, port, "t", worker=4)
    await client.connect()
    runner = asyncio.create_task(client.run(_ignore))
    try:
        await server.wait_workers(1, timeout=5)
        denied = await kit.request(
            _port(sso), "/apps/books/secret", headers={"Cookie": "courtyard_session=outsider"}
        )
        assert denied.status == 403
        assert denied.header("content-type") == "application/problem+json"
        page = await kit.request(
            _port(sso),
            "/apps/books/",
            headers={"Cookie": "courtyard_session=outsider", "Accept": BROWSER},
        )
        assert page.status == 403
        assert (page.header("content-type") or "").startswith("text/html")
        await kit.request(
            _port(sso), "/apps/books/", headers={"Cookie": f"courtyard_session={SESSION}"}
        )
        report_usage(client, access_gate(sso), 4)
        await kit.eventually(lambda: bool(usage))
        (message,) = usage
        assert message["worker"] == 4
        assert message["used"] == sorted({kit.key_of("outsider"), kit.key_of(SESSION)})
        assert [d["status"] for d in message["denials"]] == [403, 403]
        assert message["denials"][0]["path"] == "/apps/books/secret"
        assert "outsider" not in str(message["denials"])
        assert len(upstream.requests) == 1
    finally:
        client.close()
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await server.aclose()


async def test_revoking_a_session_over_the_channel_takes_effect_on_the_next_request(
    sso: Gateway,
) -> None:
    gate = access_gate(sso)
    server = ControlServer("t", credentials_source=_credentials)
    host, port = await server.start()
    client = ControlClient(host, port, "t", worker=1)
    await client.connect()
    runner = asyncio.create_task(client.run(_ignore, gate.apply_credentials))
    try:
        await server.wait_workers(1, timeout=5)
        cookie = {"Cookie": f"courtyard_session={SESSION}"}
        assert (await kit.request(_port(sso), "/apps/books/", headers=cookie)).status == 200
        generation = gate.credentials.generation
        server.publish_credentials(kit.credentials(revoke=[kit.key_of(SESSION)]))
        await kit.eventually(lambda: gate.credentials.generation > generation)
        after = await kit.request(_port(sso), "/apps/books/", headers=cookie)
        assert after.status == 401
        assert "invalid_token" in (after.header("www-authenticate") or "")
    finally:
        client.close()
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await server.aclose()


async def _ignore(_: GatewaySnapshot) -> None:
    return None


async def test_forwarded_proto_is_https_behind_tls(
    tmp_path: Path, upstream: kit.Upstream, config: GatewayConfig
) -> None:
    cert, key = ensure_dev_certificate(tmp_path / "tls", ["gw.test"])
    gw = Gateway(replace(config, tls_cert=str(cert), tls_key=str(key)))
    gw.apply(_snapshot(upstream))
    _, port = await gw.start("127.0.0.1", 0)
    try:
        context = ssl.create_default_context(cafile=str(cert))
        async with httpx.AsyncClient(verify=context) as client:
            response = await client.get(f"https://127.0.0.1:{port}/apps/blog/")
        headers = [(str(k).lower(), str(v)) for k, v in response.json()["headers"]]
        assert ("x-forwarded-proto", "https") in headers
    finally:
        await gw.aclose(0.5)


async def test_two_authorization_fields_are_refused(sso: Gateway, upstream: kit.Upstream) -> None:
    response = await kit.request(
        _port(sso),
        "/apps/blog/",
        headers=[("Authorization", f"Bearer {PAT}"), ("Authorization", "Bearer other")],
    )
    assert response.status == 400
    assert upstream.requests == []


async def test_fields_named_in_connection_are_not_credentials(sso: Gateway) -> None:
    response = await kit.request(
        _port(sso),
        "/apps/books/",
        headers=[("Connection", "close, Cookie"), ("Cookie", f"courtyard_session={SESSION}")],
    )
    assert response.status == 401
