"""The raw-socket suite: malformed, ambiguous and smuggling requests over a real socket.

Each case is sent as raw bytes to a gateway routing /apps/echo/ to a recording upstream.
Ambiguous framing gets 400 and a closed connection, and the upstream receives nothing at all.
"""

from __future__ import annotations

import asyncio

import gateway_testkit as kit
import pytest

from courtyard.core import FakeClock
from courtyard.gateway import Gateway, GatewayConfig

H = b"Host: gw.test\r\n"
POST = b"POST /apps/echo/ HTTP/1.1\r\n" + H
GET = b"GET /apps/echo/ HTTP/1.1\r\n" + H

AMBIGUOUS = {
    "cl-and-te": POST + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te-and-cl": POST + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
    "cl-duplicate-same": POST + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    "cl-duplicate-different": POST + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "cl-list": POST + b"Content-Length: 5, 5\r\n\r\nhello",
    "cl-negative": POST + b"Content-Length: -1\r\n\r\nhello",
    "cl-inner-space": POST + b"Content-Length: 1 2\r\n\r\nhello",
    "cl-plus": POST + b"Content-Length: +5\r\n\r\nhello",
    "cl-hex": POST + b"Content-Length: 0x10\r\n\r\nhello",
    "cl-empty": POST + b"Content-Length: \r\n\r\nhello",
    "cl-overflow": POST + b"Content-Length: 99999999999999999999999\r\n\r\nhello",
    "te-chunked-identity": POST + b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    "te-xchunked": POST + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    "te-chunked-twice": POST
    + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te-chunked-chunked": POST + b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
    "te-identity": POST + b"Transfer-Encoding: identity\r\n\r\nhello",
    "te-gzip-chunked": POST + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    "te-leading-comma": POST + b"Transfer-Encoding: ,chunked\r\n\r\n0\r\n\r\n",
    "te-in-http10": b"POST /apps/echo/ HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "chunk-size-not-hex": POST + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    "chunk-size-overflow": POST
    + b"Transfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
    "chunk-missing-crlf": POST + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
    "chunk-size-negative": POST + b"Transfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n",
    "chunk-size-space": POST + b"Transfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n",
    "chunk-bare-lf": POST + b"Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
    "obs-fold-space": GET + b"X-A: a\r\n b\r\n\r\n",
    "obs-fold-tab": GET + b"X-A: a\r\n\tb\r\n\r\n",
    "space-before-colon": GET + b"X-A : a\r\n\r\n",
    "te-space-before-colon": POST
    + b"Transfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\nhello",
    "nul-in-value": GET + b"X-A: a\x00b\r\n\r\n",
    "nul-in-name": GET + b"X\x00A: ab\r\n\r\n",
    "ctl-in-value": GET + b"X-A: a\x01b\r\n\r\n",
    "bad-name-chars": GET + b"X(A): ab\r\n\r\n",
    "empty-name": GET + b": ab\r\n\r\n",
    "no-colon": GET + b"abc\r\n\r\n",
    "bare-lf-request-line": b"GET /apps/echo/ HTTP/1.1\nHost: gw.test\n\n",
    "bare-lf-field": b"GET /apps/echo/ HTTP/1.1\r\nHost: gw.test\nX-A: b\r\n\r\n",
    "bare-cr-field": b"GET /apps/echo/ HTTP/1.1\r\nHost: gw.test\rX-A: b\r\n\r\n",
    "no-host": b"GET /apps/echo/ HTTP/1.1\r\n\r\n",
    "two-hosts": GET + b"Host: other.test\r\n\r\n",
    "lower-case-version": b"GET /apps/echo/ http/1.1\r\n" + H + b"\r\n",
    "unknown-method": b"BREW /apps/echo/ HTTP/1.1\r\n" + H + b"\r\n",
    "upgrade-with-body": POST
    + b"Upgrade: websocket\r\nConnection: Upgrade\r\nContent-Length: 3\r\n\r\nabc",
    "connect": b"CONNECT gw.test:443 HTTP/1.1\r\n" + H + b"\r\n",
}


async def _expect_refused(
    port: int, upstream: kit.Upstream, data: bytes, statuses: set[int]
) -> None:
    client = await kit.RawClient.connect(port)
    try:
        await client.send(data)
        response = await client.read_response()
        assert response.status in statuses, response.raw
        assert response.header("connection") == "close"
        assert response.header("content-type") == "application/problem+json"
        assert response.header("x-request-id")
        assert response.json()["status"] == response.status
        assert await client.is_closed()
    finally:
        await client.aclose()
    assert bytes(upstream.received) == b""


@pytest.mark.parametrize("name", sorted(AMBIGUOUS))
async def test_ambiguous_request_gets_400_and_nothing_is_forwarded(
    name: str, port: int, upstream: kit.Upstream
) -> None:
    await _expect_refused(port, upstream, AMBIGUOUS[name], {400})


@pytest.mark.parametrize("version", [b"HTTP/2.0", b"HTTP/0.9", b"HTTP/1.2", b"HTTP/3.0"])
async def test_other_http_versions_are_refused(
    version: bytes, port: int, upstream: kit.Upstream
) -> None:
    await _expect_refused(
        port, upstream, b"GET /apps/echo/ " + version + b"\r\n" + H + b"\r\n", {400, 505}
    )


async def test_unknown_expectation_gets_417(port: int, upstream: kit.Upstream) -> None:
    await _expect_refused(port, upstream, GET + b"Expect: teapot\r\n\r\n", {417})


SMUGGLING = {
    # CL.TE: a front end trusting Content-Length would forward "0\r\n\r\nSMUGGLED..." whole;
    # a back end trusting Transfer-Encoding would see a second request.
    "cl.te": POST
    + b"Content-Length: 49\r\nTransfer-Encoding: chunked\r\n\r\n"
    + b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: gw.test\r\n\r\n",
    # TE.CL: the reverse.
    "te.cl": POST
    + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
    + b"2d\r\nGET /smuggled HTTP/1.1\r\nHost: gw.test\r\nX: 1\r\n\r\n\r\n0\r\n\r\n",
    # TE.TE: one side ignores an obfuscated Transfer-Encoding.
    "te.te": POST
    + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\nTransfer-encoding: cow\r\n\r\n"
    + b"2d\r\nGET /smuggled HTTP/1.1\r\nHost: gw.test\r\nX: 1\r\n\r\n\r\n0\r\n\r\n",
    "te-obfuscated-tab": POST
    + b"Content-Length: 4\r\nTransfer-Encoding:\tchunked\r\n\r\n"
    + b"2d\r\nGET /smuggled HTTP/1.1\r\nHost: gw.test\r\nX: 1\r\n\r\n\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(SMUGGLING))
async def test_smuggling_never_reaches_the_upstream(
    name: str, port: int, upstream: kit.Upstream
) -> None:
    client = await kit.RawClient.connect(port)
    try:
        # A good request first, so that a pooled upstream connection exists to smuggle into.
        await client.send(GET + b"\r\n")
        assert (await client.read_response()).status == 200
        await client.send(SMUGGLING[name])
        response = await client.read_response()
        assert response.status == 400
        assert await client.is_closed()
    finally:
        await client.aclose()
    received = bytes(upstream.received)
    assert b"smuggled" not in received
    assert received.count(b" HTTP/1.1\r\n") == 1
    assert [r.target for r in upstream.requests] == ["/"]


async def test_pipelined_request_after_a_chunked_body_is_routed_by_the_gateway(
    port: int, upstream: kit.Upstream
) -> None:
    # Not smuggling: the gateway itself parses the second request, routes and normalizes it.
    client = await kit.RawClient.connect(port)
    try:
        await client.send(
            POST + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
            b"GET /apps/echo/second/../2 HTTP/1.1\r\nHost: gw.test\r\n\r\n"
        )
        first = await client.read_response()
        second = await client.read_response()
    finally:
        await client.aclose()
    assert first.echoed().body == b"hello"
    assert second.echoed().target == "/2"
    assert [r.target for r in upstream.requests] == ["/", "/2"]


BAD_PATHS = [
    b"/apps/echo/a%2Fb",
    b"/apps/echo/a%2fb",
    b"/apps/echo/a%5Cb",
    b"/apps/echo/a%5cb",
    b"/apps/echo/a\\b",
    b"/apps/echo/a%00b",
    b"/apps/echo/..%2f..%2fetc",
    b"/apps/echo/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    b"/../apps/echo/",
    b"/apps/echo/a%zz",
    b"/apps/echo/a%",
    b"/apps/echo/a#frag",
    b"*",
    b"gw.test:80",
    b"https://gw.test/apps/echo/",
]


@pytest.mark.parametrize("target", BAD_PATHS)
async def test_bad_paths_get_400(target: bytes, port: int, upstream: kit.Upstream) -> None:
    client = await kit.RawClient.connect(port)
    try:
        method = b"OPTIONS" if target == b"*" else b"GET"
        await client.send(method + b" " + target + b" HTTP/1.1\r\n" + H + b"\r\n")
        response = await client.read_response()
    finally:
        await client.aclose()
    assert response.status == 400
    assert response.json()["title"] == "Bad request"
    assert bytes(upstream.received) == b""


@pytest.mark.parametrize(
    ("target", "seen"),
    [
        (b"/apps/echo/a/../b/./c//d", "/b/c/d"),
        (b"/apps/echo/x/%2e%2e/y", "/y"),
        (b"/apps/echo/x/%2E%2e/y?q=%2e%2e/..", "/y?q=%2e%2e/.."),
        (b"/apps/echo/x/.%2e/z", "/z"),
        (b"/apps/%2e%2e/apps/echo/z", "/z"),
        (b"//apps//echo//%7euser", "/~user"),
        (b"/apps/echo/caf%c3%a9", "/caf%C3%A9"),
        (b"/apps/echo/a%20b", "/a%20b"),
        (b'/apps/echo/q"<x>', "/q%22%3Cx%3E"),
        (b"http://gw.test/apps/echo/abs/./form", "/abs/form"),
    ],
)
async def test_upstream_sees_exactly_the_normalized_path(
    target: bytes, seen: str, port: int, upstream: kit.Upstream
) -> None:
    client = await kit.RawClient.connect(port)
    try:
        await client.send(b"GET " + target + b" HTTP/1.1\r\n" + H + b"\r\n")
        response = await client.read_response()
    finally:
        await client.aclose()
    assert response.status == 200
    assert [r.target for r in upstream.requests] == [seen]
    assert bytes(upstream.received).startswith(b"GET " + seen.encode() + b" HTTP/1.1\r\n")


@pytest.mark.parametrize("host", [b"a b", b"a/b", b"x@y", b"[::1"])
async def test_invalid_host_gets_400(host: bytes, port: int, upstream: kit.Upstream) -> None:
    client = await kit.RawClient.connect(port)
    try:
        await client.send(b"GET /apps/echo/ HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
        response = await client.read_response()
    finally:
        await client.aclose()
    assert response.status == 400
    assert bytes(upstream.received) == b""


async def test_escaping_the_prefix_routes_elsewhere(port: int, upstream: kit.Upstream) -> None:
    response = await kit.request(port, "/apps/echo/../other/secret")
    assert response.status == 404
    assert bytes(upstream.received) == b""


async def test_head_too_large_gets_431(port: int, upstream: kit.Upstream) -> None:
    await _expect_refused(port, upstream, GET + b"X-Big: " + b"a" * 17000 + b"\r\n\r\n", {431})


async def test_head_too_large_across_packets_gets_431(port: int, upstream: kit.Upstream) -> None:
    client = await kit.RawClient.connect(port)
    try:
        await client.send(GET + b"X-Big: ")
        for _ in range(40):
            if client.reader.at_eof():
                break
            try:
                await client.send(b"a" * 1024)
            except ConnectionError:
                break
            await kit.eventually(lambda: True)
        response = await client.read_response()
        assert response.status == 431
    finally:
        await client.aclose()
    assert bytes(upstream.received) == b""


async def test_many_small_fields_across_packets_get_431(port: int, upstream: kit.Upstream) -> None:
    client = await kit.RawClient.connect(port)
    try:
        await client.send(GET)
        line = b"X-Pad: " + b"p" * 100 + b"\r\n"
        for _ in range(20):
            await client.send(line * 10)  # the gateway drains what follows its answer
        response = await client.read_response()
        assert response.status == 431
        assert await client.is_closed()
    finally:
        await client.aclose()
    assert bytes(upstream.received) == b""


async def test_too_many_fields_gets_431(port: int, upstream: kit.Upstream) -> None:
    fields = b"".join(b"X-F%d: v\r\n" % i for i in range(101))
    await _expect_refused(port, upstream, GET + fields + b"\r\n", {431})


async def test_hundred_fields_pass(port: int, upstream: kit.Upstream) -> None:
    fields = b"".join(b"X-F%d: v\r\n" % i for i in range(99))  # + Host = 100
    client = await kit.RawClient.connect(port)
    try:
        await client.send(GET + fields + b"\r\n")
        assert (await client.read_response()).status == 200
    finally:
        await client.aclose()


async def test_long_target_gets_414(port: int, upstream: kit.Upstream) -> None:
    await _expect_refused(
        port, upstream, b"GET /apps/echo/" + b"a" * 9000 + b" HTTP/1.1\r\n" + H + b"\r\n", {414}
    )


async def test_slowloris_gets_408_and_close(
    port: int, upstream: kit.Upstream, gateway: Gateway
) -> None:
    client = await kit.RawClient.connect(port)
    try:
        await client.send(b"GET /apps/echo/ HTTP/1.1\r\nHost: gw.test\r\nX-Slow: ")
        await client.send(b"a")
        response = await client.read_response(timeout=3)
        assert response.status == 408
        assert response.header("connection") == "close"
        assert await client.is_closed()
    finally:
        await client.aclose()
    assert bytes(upstream.received) == b""
    assert gateway.metrics()["requests"].get("-|-|4xx") == 1


async def test_idle_connection_without_a_request_is_closed(port: int) -> None:
    client = await kit.RawClient.connect(port)
    try:
        assert await client.read_all(timeout=3) == b""  # header timeout, then a quiet close
    finally:
        await client.aclose()


async def test_default_header_timeout_on_a_fake_clock(upstream: kit.Upstream) -> None:
    # The gateway takes its time from the injected clock: ten seconds pass in no time.
    clock = FakeClock()
    gateway = Gateway(GatewayConfig(), clock=clock)
    gateway.apply(kit.snapshot(1, [kit.route()], {"echo": [upstream.instance()]}))
    _, port = await gateway.start()
    client = await kit.RawClient.connect(port)
    try:
        await client.send(GET + b"\r\n")
        assert (await client.read_response()).status == 200
        await client.send(b"GET /apps/echo/ HTTP/1.1\r\nHost: gw")
        head = b""
        for _ in range(40):
            await clock.advance(1.0)
            try:
                head = await asyncio.wait_for(client.reader.readuntil(b"\r\n\r\n"), 0.05)
                break
            except TimeoutError:
                continue
        assert head.startswith(b"HTTP/1.1 408 ")
        assert 9 <= clock.monotonic() - 1_000_000.0 <= 21  # 10 s after the head began
    finally:
        await client.aclose()
        await gateway.aclose(0)
