"""Proxy behaviour over real sockets: headers, bodies, keep-alive, upgrades, errors."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path

import gateway_testkit as kit
import pytest

from courtyard.gateway import Gateway, GatewayConfig

GET = b"GET /apps/echo/ HTTP/1.1\r\nHost: gw.test\r\n\r\n"


# -- headers ---------------------------------------------------------------------------------


async def test_forwarded_headers_are_overwritten(port: int) -> None:
    response = await kit.request(
        port,
        "/apps/echo/a/b?q=1",
        headers=[
            ("Host", "Gw.Test:8080"),
            ("X-Forwarded-For", "6.6.6.6"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "evil.test"),
            ("X-Forwarded-Prefix", "/evil"),
            ("X_Forwarded_For", "6.6.6.6"),
            ("Forwarded", "for=6.6.6.6;proto=https"),
            ("X-Real-IP", "6.6.6.6"),
        ],
    )
    seen = response.echoed()
    assert seen.target == "/a/b?q=1"
    assert seen.header_all("x-forwarded-for") == ["127.0.0.1"]
    assert seen.header_all("x-forwarded-proto") == ["http"]
    assert seen.header_all("x-forwarded-host") == ["Gw.Test:8080"]
    assert seen.header_all("x-forwarded-prefix") == ["/apps/echo"]
    assert seen.header_all("host") == ["Gw.Test:8080"]
    for name in ("forwarded", "x_forwarded_for", "x-real-ip"):
        assert seen.header(name) is None


async def test_no_prefix_header_without_strip(port: int) -> None:
    seen = (await kit.request(port, "/keep/x", headers={"X-Forwarded-Prefix": "/evil"})).echoed()
    assert seen.target == "/keep/x"
    assert seen.header("x-forwarded-prefix") is None


@pytest.mark.parametrize(
    "name",
    [
        "Courtyard-Identity",
        "courtyard-identity",
        "COURTYARD-IDENTITY",
        "Courtyard_Identity",
        "courtyard_identity",
        "CoUrTyArD_iDeNtItY",
    ],
)
async def test_identity_header_cannot_be_spoofed(
    name: str, port: int, upstream: kit.Upstream
) -> None:
    response = await kit.request(port, headers=[(name, "eyJhbGciOiJub25lIn0.e30.")])
    assert response.status == 200
    assert b"eyJhbGciOiJub25lIn0" not in bytes(upstream.received)
    assert b"courtyard" not in bytes(upstream.received).lower()
    assert response.echoed().header("courtyard-identity") is None


async def test_hop_by_hop_and_connection_named_fields_are_removed(
    port: int, upstream: kit.Upstream
) -> None:
    response = await kit.request(
        port,
        "/apps/echo/hop",
        headers=[
            ("Connection", "X-Drop-Me, keep-alive"),
            ("X-Drop-Me", "1"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Connection", "keep-alive"),
            ("TE", "trailers"),
            ("Trailer", "X-T"),
            ("Upgrade", "h2c"),
            ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
            ("X-Kept", "yes"),
        ],
    )
    received = bytes(upstream.received).lower()
    for name in (
        b"x-drop-me",
        b"keep-alive",
        b"proxy-connection",
        b"\r\nte:",
        b"trailer",
        b"upgrade",
        b"proxy-authorization",
        b"connection:",
    ):
        assert name not in received
    assert b"x-kept: yes" in received
    # And on the way back.
    names = {name.lower() for name, _ in response.headers}
    assert {"x-secret", "keep-alive", "proxy-authenticate", "trailer", "upgrade"}.isdisjoint(names)
    assert response.header("x-kept") == "k"
    assert response.header_all("connection") == []  # the upstream's own list is gone
    assert response.body == b"hop"


async def test_request_id_kept_when_valid_else_minted(port: int) -> None:
    kept = (await kit.request(port, headers={"X-Request-Id": "abc-123.x:y_z"})).echoed()
    assert kept.header_all("x-request-id") == ["abc-123.x:y_z"]
    for bad in ("has space", "x" * 129, "semi;colon", ""):
        seen = (await kit.request(port, headers={"X-Request-Id": bad})).echoed()
        minted = seen.header_all("x-request-id")
        assert len(minted) == 1 and len(minted[0]) == 32 and minted[0] != bad
        int(minted[0], 16)


async def test_traceparent_keeps_the_trace_and_starts_a_new_span(port: int) -> None:
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    seen = (
        await kit.request(port, headers={"traceparent": parent, "tracestate": "vendor=1"})
    ).echoed()
    [forwarded] = seen.header_all("traceparent")
    version, trace_id, span, flags = forwarded.split("-")
    assert (version, trace_id, flags) == ("00", "4bf92f3577b34da6a3ce929d0e0e4736", "01")
    assert span != "00f067aa0ba902b7" and len(span) == 16
    assert seen.header_all("tracestate") == ["vendor=1"]


@pytest.mark.parametrize(
    "value", [None, "garbage", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"]
)
async def test_traceparent_generated_when_missing_or_invalid(value: str | None, port: int) -> None:
    headers = {"traceparent": value} if value else {}
    seen = (await kit.request(port, headers=headers)).echoed()
    [forwarded] = seen.header_all("traceparent")
    version, trace_id, span, flags = forwarded.split("-")
    assert version == "00" and len(trace_id) == 32 and len(span) == 16 and flags == "01"
    assert trace_id != "4bf92f3577b34da6a3ce929d0e0e4736"
    assert seen.header("x-request-id") == trace_id  # one id to grep for


# -- routing answers -------------------------------------------------------------------------


async def test_prefix_without_slash_redirects_keeping_the_query(port: int) -> None:
    response = await kit.request(port, "/apps/echo?x=1&y=2")
    assert response.status == 308
    assert response.header("location") == "/apps/echo/?x=1&y=2"
    assert response.header("x-request-id")


async def test_no_route_is_a_problem_document(port: int, upstream: kit.Upstream) -> None:
    response = await kit.request(port, "/nowhere", headers={"X-Request-Id": "req-1"})
    assert response.status == 404
    assert response.header("content-type") == "application/problem+json"
    assert response.header("x-request-id") == "req-1"
    doc = response.json()
    assert doc["status"] == 404 and doc["title"] == "No route" and doc["request_id"] == "req-1"
    assert str(doc["type"]).startswith("https://courtyard.dev/problems/")
    assert bytes(upstream.received) == b""


async def test_browsers_get_an_html_error_page(port: int) -> None:
    response = await kit.request(
        port,
        "/nowhere/<script>",
        headers={"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"},
    )
    assert response.status == 404
    assert response.header("content-type") == "text/html; charset=utf-8"
    assert b"<h1>404 No route</h1>" in response.body
    assert b"<script>" not in response.body


async def test_health_endpoints_are_answered_by_the_gateway(
    port: int, upstream: kit.Upstream
) -> None:
    health = await kit.request(port, "/healthz")
    ready = await kit.request(port, "/readyz")
    assert (health.status, health.json()) == (200, {"status": "ok"})
    assert (ready.status, ready.json()) == (200, {"status": "ok"})
    assert bytes(upstream.received) == b""


async def test_not_ready_before_the_first_snapshot() -> None:
    gateway = Gateway(GatewayConfig(sweep_interval=0.05))
    _, port = await gateway.start()
    try:
        assert (await kit.request(port, "/healthz")).status == 200
        assert (await kit.request(port, "/readyz")).status == 503
        early = await kit.request(port, "/apps/echo/")
        assert early.status == 503 and early.header("retry-after") == "1"
        gateway.apply(kit.snapshot(1, [], {}))
        assert (await kit.request(port, "/readyz")).status == 200
        assert gateway.is_ready
    finally:
        await gateway.aclose(0.5)


# -- keep-alive and pipelining ---------------------------------------------------------------


async def test_keep_alive_reuses_both_connections(port: int, upstream: kit.Upstream) -> None:
    client = await kit.RawClient.connect(port)
    try:
        for _ in range(5):
            await client.send(GET)
            response = await client.read_response()
            assert response.status == 200 and response.header("connection") is None
    finally:
        await client.aclose()
    for _ in range(3):
        assert (await kit.request(port)).status == 200
    assert upstream.connections_made == 1
    assert len(upstream.requests) == 8


async def test_pipelined_requests_are_answered_in_order(port: int, upstream: kit.Upstream) -> None:
    client = await kit.RawClient.connect(port)
    try:
        await client.send(
            b"GET /apps/echo/delay?s=0.05 HTTP/1.1\r\nHost: gw.test\r\n\r\n"
            b"GET /apps/echo/second HTTP/1.1\r\nHost: gw.test\r\n\r\n"
            b"POST /apps/echo/third HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 3\r\n\r\nabc"
        )
        first = await client.read_response()
        second = await client.read_response()
        third = await client.read_response()
    finally:
        await client.aclose()
    assert first.echoed().target == "/delay?s=0.05"
    assert second.echoed().target == "/second"
    assert (third.echoed().target, third.echoed().body) == ("/third", b"abc")


async def test_many_pipelined_requests(port: int, upstream: kit.Upstream) -> None:
    client = await kit.RawClient.connect(port)
    try:
        await client.send(
            b"".join(b"GET /apps/echo/%d HTTP/1.1\r\nHost: gw.test\r\n\r\n" % i for i in range(60))
        )
        targets = [(await client.read_response()).echoed().target for _ in range(60)]
    finally:
        await client.aclose()
    assert targets == [f"/{i}" for i in range(60)]


async def test_http10_client(port: int) -> None:
    client = await kit.RawClient.connect(port)
    try:
        await client.send(b"GET /apps/echo/a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        kept = await client.read_response()
        assert kept.header("connection") == "keep-alive"
        assert kept.echoed().header("host") == ""
        await client.send(b"GET /apps/echo/close-delimited HTTP/1.0\r\n\r\n")
        raw = await client.read_all()
    finally:
        await client.aclose()
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"transfer-encoding" not in raw.lower()
    assert raw.endswith(b"\r\n\r\nuntil-close body")


# -- bodies ----------------------------------------------------------------------------------


async def test_content_length_body_is_forwarded_as_is(port: int, upstream: kit.Upstream) -> None:
    response = await kit.request(port, "/apps/echo/post", method="POST", body=b"x" * 1000)
    assert response.echoed().body == b"x" * 1000
    assert b"\r\nContent-Length: 1000\r\n\r\n" + b"x" * 1000 in bytes(upstream.received)


async def test_chunked_request_is_rechunked_canonically(port: int, upstream: kit.Upstream) -> None:
    client = await kit.RawClient.connect(port)
    try:
        await client.send(
            b"POST /apps/echo/c HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5;ext=1\r\nhello\r\n"
        )
        await client.send(b"6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")
        response = await client.read_response()
    finally:
        await client.aclose()
    assert response.echoed().body == b"hello world"
    received = bytes(upstream.received)
    assert b"Transfer-Encoding: chunked\r\n" in received
    assert received.endswith(b"\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    assert b"ext" not in received and b"X-Trailer" not in received


async def test_chunked_response_is_rechunked(port: int) -> None:
    response = await kit.request(port, "/apps/echo/chunked")
    assert response.body == b"hello chunked world"
    assert response.raw.endswith(b"6\r\nhello \r\n8\r\nchunked \r\n5\r\nworld\r\n0\r\n\r\n")


async def test_close_delimited_response_becomes_chunked(port: int) -> None:
    client = await kit.RawClient.connect(port)
    try:
        await client.send(b"GET /apps/echo/close-delimited HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        response = await client.read_response()
        assert response.header("transfer-encoding") == "chunked"
        assert response.body == b"until-close body"
        await client.send(GET)  # the client connection is still good
        assert (await client.read_response()).status == 200
    finally:
        await client.aclose()


async def test_large_body_streams_both_ways_without_buffering(
    port: int, upstream: kit.Upstream
) -> None:
    # 20 MiB up and echoed back at once by the upstream; the client reads while it writes.
    # With every hop bounded, the upload can only finish once most of the echo has arrived.
    total = 20 * 1024 * 1024
    block = b"z" * 65536
    client = await kit.RawClient.connect(port)
    received_when_sent = -1
    received = 0
    try:
        await client.send(
            b"POST /apps/echo/stream-echo HTTP/1.1\r\nHost: gw.test\r\n"
            b"Content-Length: %d\r\n\r\n" % total
        )
        head = await client.reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")

        async def upload() -> None:
            nonlocal received_when_sent
            for _ in range(total // len(block)):
                client.writer.write(block)
                await client.writer.drain()
            received_when_sent = received

        sender = asyncio.create_task(upload())
        async with asyncio.timeout(30):
            while received < total:
                size_line = await client.reader.readuntil(b"\r\n")
                size = int(size_line, 16)
                await client.reader.readexactly(size + 2)
                received += size
        await sender
    finally:
        await client.aclose()
    assert received == total == upstream.streamed
    assert received_when_sent > total - 12 * 1024 * 1024


async def test_large_download_respects_a_slow_reader(port: int, gateway: Gateway) -> None:
    client = await kit.RawClient.connect(port)
    size = 16 * 1024 * 1024
    try:
        await client.send(b"GET /apps/echo/big?size=%d HTTP/1.1\r\nHost: gw.test\r\n\r\n" % size)
        head = await client.reader.readuntil(b"\r\n\r\n")
        assert b"Content-Length: %d" % size in head
        got = 0
        async with asyncio.timeout(30):
            while got < size:
                chunk = await client.reader.read(1 << 16)
                assert chunk
                got += len(chunk)
                if got < 2 << 20:
                    await asyncio.sleep(0)  # a reader slower than the upstream at first
    finally:
        await client.aclose()
    assert got == size


async def test_expect_continue_is_answered_by_the_gateway(
    port: int, upstream: kit.Upstream
) -> None:
    client = await kit.RawClient.connect(port)
    try:
        await client.send(
            b"POST /apps/echo/e HTTP/1.1\r\nHost: gw.test\r\nExpect: 100-continue\r\n"
            b"Content-Length: 4\r\n\r\n"
        )
        interim = await asyncio.wait_for(client.reader.readuntil(b"\r\n\r\n"), 5)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        await client.send(b"body")
        response = await client.read_response()
    finally:
        await client.aclose()
    assert response.echoed().body == b"body"
    assert b"expect" not in bytes(upstream.received).lower()


async def test_informational_responses_from_upstream_are_dropped(port: int) -> None:
    response = await kit.request(port, "/apps/echo/informational")
    assert response.status == 200 and response.body == b"ok"
    assert response.raw.count(b"HTTP/1.1 ") == 1  # neither 100 nor 103 came through


async def test_head_has_no_body_and_the_connection_stays_usable(port: int) -> None:
    client = await kit.RawClient.connect(port)
    try:
        for _ in range(2):
            await client.send(b"HEAD /apps/echo/h HTTP/1.1\r\nHost: gw.test\r\n\r\n")
            head = await client.read_response(head=True)
            assert head.status == 200 and int(head.header("content-length") or 0) > 0
            await client.send(GET)
            assert (await client.read_response()).echoed().method == "GET"
    finally:
        await client.aclose()


@pytest.mark.parametrize("code", [204, 304])
async def test_no_body_statuses(code: int, port: int) -> None:
    client = await kit.RawClient.connect(port)
    try:
        await client.send(b"GET /apps/echo/status/%d HTTP/1.1\r\nHost: gw.test\r\n\r\n" % code)
        response = await client.read_response()
        assert response.status == code
        if code == 204:
            assert response.header("content-length") is None
        await client.send(GET)
        follow = await client.read_response()
        assert follow.status == 200 and follow.echoed().target == "/"
    finally:
        await client.aclose()


async def test_upstream_reason_phrase_and_status_pass_through(port: int) -> None:
    response = await kit.request(port, "/apps/echo/status/418")
    assert (response.status, response.reason) == (418, "X")


# -- upgrades --------------------------------------------------------------------------------


async def test_websocket_upgrade_pipes_raw_bytes(
    port: int, upstream: kit.Upstream, gateway: Gateway
) -> None:
    client = await kit.RawClient.connect(port)
    try:
        await client.send(
            b"GET /apps/echo/ws HTTP/1.1\r\nHost: gw.test\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        response = await client.read_response()
        assert response.status == 101
        assert response.header("upgrade") == "websocket"
        assert response.header("connection") == "upgrade"
        assert response.header("sec-websocket-accept") == "x"
        for message in (b"\x81\x05hello", b"\x00\xff raw \r\n\r\n GET / HTTP/1.1\r\n\r\n"):
            await client.send(message)
            assert await asyncio.wait_for(client.reader.readexactly(len(message)), 5) == message
    finally:
        await client.aclose()
    seen = upstream.requests[0]
    assert seen.header("upgrade") == "websocket" and seen.header("connection") == "upgrade"
    assert seen.header("sec-websocket-key") == "dGhlIHNhbXBsZSBub25jZQ=="
    await kit.eventually(lambda: gateway.metrics()["in_flight"] == 0)
    assert gateway.metrics()["requests"]["echo|/apps/echo/|1xx"] == 1


async def test_refused_upgrade_is_an_ordinary_response(port: int) -> None:
    client = await kit.RawClient.connect(port)
    try:
        await client.send(
            b"GET /apps/echo/status/403 HTTP/1.1\r\nHost: gw.test\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\n\r\n"
        )
        response = await client.read_response()
        assert (response.status, response.body) == (403, b"no")
        assert response.header("connection") == "close"
        assert await client.is_closed()
    finally:
        await client.aclose()


# -- failures --------------------------------------------------------------------------------


async def test_upstream_reset_is_502(port: int, gateway: Gateway) -> None:
    response = await kit.request(port, "/apps/echo/reset")
    assert response.status == 502
    assert response.json()["title"] == "Bad gateway"
    assert gateway.metrics()["upstream_errors"] == {"echo|reset": 1}


async def test_stale_pooled_connection_is_retried_once(port: int, upstream: kit.Upstream) -> None:
    client = await kit.RawClient.connect(port)
    try:
        await client.send(GET)
        assert (await client.read_response()).status == 200
        await client.send(b"GET /apps/echo/reset-reused HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        response = await client.read_response()
    finally:
        await client.aclose()
    assert response.status == 200
    assert upstream.resets == 1 and upstream.connections_made == 2


async def test_post_with_body_is_not_retried(port: int, upstream: kit.Upstream) -> None:
    client = await kit.RawClient.connect(port)
    try:
        await client.send(GET)
        assert (await client.read_response()).status == 200
        await client.send(
            b"POST /apps/echo/reset-reused HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 1\r\n\r\nx"
        )
        assert (await client.read_response()).status == 502
    finally:
        await client.aclose()


async def test_connection_refused_is_503_with_retry_after(
    port: int, upstream: kit.Upstream, gateway: Gateway
) -> None:
    assert (await kit.request(port)).status == 200
    await upstream.aclose()  # the instance dies; its pooled connection goes with it
    response = await kit.request(port)
    assert response.status == 503
    assert response.header("retry-after") == "1"
    assert gateway.metrics()["upstream_errors"]["echo|connect"] == 1
    # Marked down: the next request does not even try.
    again = await kit.request(port)
    assert again.status == 503
    assert gateway.metrics()["upstream_errors"]["echo|connect"] == 1


async def test_app_without_instances_is_503(gateway: Gateway, port: int) -> None:
    gateway.apply(kit.snapshot(2, [kit.route()], {"echo": []}))
    response = await kit.request(port)
    assert response.status == 503 and response.header("retry-after") == "1"
    gateway.apply(kit.snapshot(3, [kit.route()], {}))
    assert (await kit.request(port)).status == 503


async def test_connect_failure_falls_over_to_the_next_instance(
    gateway: Gateway, port: int, upstream: kit.Upstream
) -> None:
    dead = await kit.Upstream("dead").start()
    dead_instance = dead.instance()
    await dead.aclose()
    gateway.apply(kit.snapshot(2, [kit.route()], {"echo": [dead_instance, upstream.instance()]}))
    for _ in range(4):
        response = await kit.request(port)
        assert response.status == 200 and response.header("x-instance") == "a"
    assert gateway.metrics()["upstream_errors"]["echo|connect"] == 1


async def test_response_timeout_is_504(gateway: Gateway, port: int, upstream: kit.Upstream) -> None:
    gateway.apply(
        kit.snapshot(2, [kit.route(response_timeout=0.2)], {"echo": [upstream.instance()]})
    )
    client = await kit.RawClient.connect(port)
    try:
        await client.send(b"GET /apps/echo/hold HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        response = await client.read_response(timeout=3)
        assert response.status == 504
        await client.send(GET)  # the client connection survives
        assert (await client.read_response()).status == 200
    finally:
        await client.aclose()
    assert gateway.metrics()["upstream_errors"] == {"echo|timeout": 1}


async def test_body_over_the_limit_is_413(
    gateway: Gateway, port: int, upstream: kit.Upstream
) -> None:
    gateway.apply(kit.snapshot(2, [kit.route(max_body_bytes=10)], {"echo": [upstream.instance()]}))
    declared = await kit.request(port, method="POST", body=b"x" * 11)
    assert declared.status == 413 and declared.header("connection") == "close"
    assert (await kit.request(port, method="POST", body=b"x" * 10)).status == 200
    client = await kit.RawClient.connect(port)
    try:
        await client.send(
            b"POST /apps/echo/ HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"8\r\n12345678\r\n"
        )
        await kit.eventually(lambda: len(upstream.connections) > 0)
        await client.send(b"8\r\n12345678\r\n0\r\n\r\n")
        streamed = await client.read_response()
        assert streamed.status == 413
        assert await client.is_closed()
    finally:
        await client.aclose()


async def test_client_leaving_mid_request_is_cleaned_up(
    gateway: Gateway, port: int, upstream: kit.Upstream
) -> None:
    client = await kit.RawClient.connect(port)
    await client.send(b"GET /apps/echo/hold HTTP/1.1\r\nHost: gw.test\r\n\r\n")
    await kit.eventually(lambda: upstream.held == 1)
    assert gateway.metrics()["in_flight"] == 1
    await client.aclose()
    await kit.eventually(lambda: gateway.metrics()["in_flight"] == 0)
    assert gateway.metrics()["requests"]["echo|/apps/echo/|4xx"] == 1  # logged as 499
    upstream.release()
    assert (await kit.request(port)).status == 200


# -- balancing -------------------------------------------------------------------------------


async def test_least_outstanding_balancing(
    gateway: Gateway, port: int, upstream: kit.Upstream
) -> None:
    other = await kit.Upstream("b").start()
    try:
        gateway.apply(
            kit.snapshot(2, [kit.route()], {"echo": [upstream.instance(), other.instance()]})
        )
        holds = [asyncio.create_task(kit.request(port, "/apps/echo/hold")) for _ in range(4)]
        await kit.eventually(lambda: upstream.held + other.held == 4)
        assert (upstream.held, other.held) == (2, 2)
        # a has one more in flight: the next requests go to b while it stays less loaded
        extra = asyncio.create_task(kit.request(port, "/apps/echo/hold"))
        await kit.eventually(lambda: upstream.held + other.held == 5)
        busier = upstream if upstream.held == 3 else other
        idler = other if busier is upstream else upstream
        assert idler.held == 2
        fast = await kit.request(port, "/apps/echo/fast")
        assert fast.header("x-instance") == idler.name
        upstream.release()
        other.release()
        for task in [*holds, extra]:
            assert (await task).status == 200
        # Equal load: ties go round-robin.
        names = [(await kit.request(port)).header("x-instance") for _ in range(10)]
        assert names.count("a") == names.count("b") == 5
    finally:
        await other.aclose()


# -- access log and metrics ------------------------------------------------------------------


async def test_access_log_lines(tmp_path: Path, upstream: kit.Upstream) -> None:
    log_path = tmp_path / "access.log"
    gateway = Gateway(replace(GatewayConfig(sweep_interval=0.05), access_log=str(log_path)))
    gateway.apply(kit.snapshot(1, [kit.route()], {"echo": [upstream.instance()]}))
    _, port = await gateway.start()
    try:
        await kit.request(port, "/apps/echo/x/../y?secret=1", headers={"X-Request-Id": "r-1"})
        await kit.request(port, "/missing")
        await kit.eventually(lambda: log_path.exists() and log_path.read_text().count("\n") == 2)
    finally:
        await gateway.aclose(0.5)
    first, second = (json.loads(line) for line in log_path.read_text().splitlines())
    assert first["request_id"] == "r-1"
    # The trace id the instance got in its traceparent, so the two logs join up.
    assert first["trace_id"] == upstream.requests[-1].header("traceparent").split("-")[1]
    assert (first["method"], first["path"], first["status"]) == ("GET", "/apps/echo/y", 200)
    assert (first["app"], first["instance"], first["upstream"]) == ("echo", "a", "200")
    assert first["client"] == "127.0.0.1" and first["bytes"] > 0
    assert first["duration_ms"] >= 0 and first["time"].endswith("Z")
    assert (second["status"], second["app"], second["instance"]) == (404, "-", None)


async def test_metrics_follow_the_contract_shape(port: int, gateway: Gateway) -> None:
    for _ in range(3):
        await kit.request(port)
    await kit.request(port, "/nowhere")
    metrics = gateway.metrics()
    assert metrics["requests"] == {"echo|/apps/echo/|2xx": 3, "-|-|4xx": 1}
    histogram = metrics["latency"]["echo|/apps/echo/"]
    assert histogram["count"] == 3 and sum(histogram["buckets"]) == 3
    assert len(histogram["buckets"]) == 14 and histogram["sum"] > 0
    assert metrics["in_flight"] == 0 and metrics["upstream_errors"] == {}


async def test_graceful_close_finishes_in_flight_requests(upstream: kit.Upstream) -> None:
    gateway = Gateway(GatewayConfig(sweep_interval=0.02))
    gateway.apply(kit.snapshot(1, [kit.route()], {"echo": [upstream.instance()]}))
    _, port = await gateway.start()
    pending = asyncio.create_task(kit.request(port, "/apps/echo/hold"))
    idle = await kit.RawClient.connect(port)
    await kit.eventually(lambda: upstream.held == 1)
    closing = asyncio.create_task(gateway.aclose(5))
    assert await idle.is_closed()  # idle keep-alive connections go at once
    await idle.aclose()
    upstream.release()
    response = await pending
    await closing
    assert response.status == 200
    with pytest.raises(OSError):
        await kit.RawClient.connect(port)


# -- timeouts and pooled connections ---------------------------------------------------------


async def _gateway_with(upstream: kit.Upstream, **changes: float) -> tuple[Gateway, int]:
    gateway = Gateway(replace(GatewayConfig(sweep_interval=0.02), **changes))
    gateway.apply(kit.snapshot(1, [kit.route()], {"echo": [upstream.instance()]}))
    _, port = await gateway.start()
    return gateway, port


async def test_keep_alive_timeout_closes_idle_clients(upstream: kit.Upstream) -> None:
    gateway, port = await _gateway_with(upstream, keepalive_timeout=0.2)
    client = await kit.RawClient.connect(port)
    try:
        await client.send(GET)
        assert (await client.read_response()).status == 200
        assert await client.read_all(timeout=3) == b""  # closed quietly, no 408
    finally:
        await client.aclose()
        await gateway.aclose(0.5)


async def test_stalled_request_body_is_given_up(upstream: kit.Upstream) -> None:
    gateway, port = await _gateway_with(upstream, body_timeout=0.2)
    client = await kit.RawClient.connect(port)
    try:
        await client.send(
            b"POST /apps/echo/ HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 10\r\n\r\nhalf"
        )
        assert await client.is_closed(timeout=3)
        await kit.eventually(lambda: gateway.metrics()["in_flight"] == 0)
    finally:
        await client.aclose()
        await gateway.aclose(0.5)


async def test_stalled_response_body_is_given_up(upstream: kit.Upstream) -> None:
    gateway, port = await _gateway_with(upstream, upstream_idle_timeout=0.2)
    client = await kit.RawClient.connect(port)
    try:
        await client.send(b"GET /apps/echo/stall HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        received = await client.read_all(timeout=3)  # cut short, then closed
        assert received.startswith(b"HTTP/1.1 200 OK\r\n")
        assert received.endswith(b"partial")
        await kit.eventually(lambda: not upstream.connections)  # upstream side closed too
    finally:
        await client.aclose()
        await gateway.aclose(0.5)


async def test_idle_pooled_connections_expire(upstream: kit.Upstream) -> None:
    gateway, port = await _gateway_with(upstream, pool_idle_timeout=0.1)
    try:
        assert (await kit.request(port)).status == 200
        await kit.eventually(lambda: upstream.connections_made == 1 and not upstream.connections)
        assert (await kit.request(port)).status == 200
        assert upstream.connections_made == 2
    finally:
        await gateway.aclose(0.5)


async def test_upstream_closing_an_idle_connection_is_noticed(
    port: int, upstream: kit.Upstream
) -> None:
    assert (await kit.request(port)).status == 200
    for conn in list(upstream.connections):
        assert conn.transport is not None
        conn.transport.close()
    await kit.eventually(lambda: not upstream.connections)
    response = await kit.request(port, "/apps/echo/reset-reused")
    assert response.status == 200 and upstream.resets == 0
    assert upstream.connections_made == 2


async def test_upstream_connection_close_is_not_pooled(port: int, upstream: kit.Upstream) -> None:
    assert (await kit.request(port, "/apps/echo/close")).body == b"ok"
    assert (await kit.request(port)).status == 200
    assert upstream.connections_made == 2


async def test_a_slow_but_steady_response_is_not_cut(upstream: kit.Upstream) -> None:
    # The idle timeout counts from the last byte, not from the start of the response.
    gateway, port = await _gateway_with(upstream, upstream_idle_timeout=0.15)
    client = await kit.RawClient.connect(port)
    try:
        await client.send(b"GET /apps/echo/drip HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        response = await client.read_response(timeout=5)
        assert response.body == b"d" * 8
    finally:
        await client.aclose()
        await gateway.aclose(0.5)


async def test_every_answer_names_its_request(port: int) -> None:
    proxied = await kit.request(port, headers={"X-Request-Id": "abc"})
    assert proxied.header_all("x-request-id") == ["abc"]
    minted = await kit.request(port)
    assert minted.header("x-request-id") == minted.echoed().header("x-request-id")
