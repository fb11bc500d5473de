"""The pure request rules: head checks and the head sent upstream."""

from __future__ import annotations

import gateway_testkit as kit
import pytest

from courtyard.gateway._exchange import Exchange
from courtyard.gateway._requests import RequestRejected, check_head, upstream_head
from courtyard.gateway._routing import RouteEntry


def _exchange(**fields: object) -> Exchange:
    ex = Exchange(0.0)
    ex.host = b"gw.test"
    for name, value in fields.items():
        setattr(ex, name, value)
    return ex


@pytest.mark.parametrize(
    ("fields", "version", "method", "upgrade", "status"),
    [
        ({}, "2.0", b"GET", False, 505),
        ({}, "0.9", b"GET", False, 505),
        ({"host": None}, "1.1", b"GET", False, 400),
        ({"te": b"gzip, chunked"}, "1.1", b"POST", False, 400),
        ({"te": b"chunked", "content_length": 3}, "1.1", b"POST", False, 400),
        ({"te": b"chunked", "host": None}, "1.0", b"POST", False, 400),
        ({}, "1.1", b"CONNECT", True, 400),
        ({"upgrade": b"websocket", "content_length": 5}, "1.1", b"POST", True, 400),
        ({"upgrade": b"websocket"}, "1.0", b"GET", True, 400),
    ],
)
def test_check_head_refuses(
    fields: dict[str, object], version: str, method: bytes, upgrade: bool, status: int
) -> None:
    with pytest.raises(RequestRejected) as caught:
        check_head(_exchange(**fields), version, method, upgrade)
    assert caught.value.status == status


def test_check_head_settles_framing_and_options() -> None:
    ex = _exchange(
        te=b"Chunked",
        tokens={b"keep-alive", b"x-secret", b"x-request-id"},
        fwd=[b"X-Secret", b": ", b"1", b"\r\n", b"X-Kept", b": ", b"2", b"\r\n"],
        request_id=b"client-id",
        upgrade=b"h2c",
    )
    check_head(ex, "1.1", b"POST", False)
    assert ex.chunked and ex.http11 and not ex.is_head
    assert ex.fwd == [b"X-Kept", b": ", b"2", b"\r\n"]
    assert ex.request_id is None  # named in Connection: not trusted
    assert ex.upgrade is None  # Upgrade without "Connection: upgrade" is dropped
    http10 = _exchange(host=None, expect=True)
    check_head(http10, "1.0", b"HEAD", False)
    assert not http10.http11 and http10.is_head and not http10.expect


def test_upstream_head() -> None:
    route = RouteEntry.from_route(kit.route())
    ex = _exchange(
        method=b"POST", content_length=3, request_id=b"rid", fwd=[b"A", b": ", b"b", b"\r\n"]
    )
    ex.traceparent = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
    head = upstream_head(
        ex, route, b"/x?q", b"gw.test", b"X-Forwarded-For: 1.2.3.4\r\n", b"m" * 32, b"s" * 16
    )
    assert head == (
        b"POST /x?q HTTP/1.1\r\nHost: gw.test\r\nA: b\r\nX-Forwarded-For: 1.2.3.4\r\n"
        b"X-Forwarded-Host: gw.test\r\nX-Request-Id: rid\r\n"
        b"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-ssssssssssssssss-00\r\n"
        b"X-Forwarded-Prefix: /apps/echo\r\nContent-Length: 3\r\n\r\n"
    )
    upgrade = _exchange(method=b"GET", upgrade=b"websocket")
    head = upstream_head(upgrade, route, b"/ws", None, b"", b"m" * 32, b"s" * 16)
    assert b"Host: \r\n" in head and b"X-Request-Id: " + b"m" * 32 in head
    assert b"traceparent: 00-" + b"m" * 32 + b"-" + b"s" * 16 + b"-01\r\n" in head
    assert head.endswith(b"Connection: upgrade\r\nUpgrade: websocket\r\n\r\n")


@pytest.mark.parametrize(
    ("traceparent", "minted", "sample", "flags", "sampled", "parent"),
    [
        # A new trace: the random id decides against the share; the flag says so upstream.
        (None, b"0000" + b"a" * 28, 0.5, b"01", True, b""),
        (None, b"ffff" + b"a" * 28, 0.5, b"00", False, b""),
        (None, b"ffff" + b"a" * 28, 1.0, b"01", True, b""),
        (None, b"0000" + b"a" * 28, 0.0, b"00", False, b""),
        # A continued trace follows its caller's decision, whatever the share (parent-based).
        (b"00-" + b"4" * 32 + b"-" + b"7" * 16 + b"-01", b"f" * 32, 0.0, b"01", True, b"7" * 16),
        (b"00-" + b"4" * 32 + b"-" + b"7" * 16 + b"-00", b"0" * 32, 1.0, b"00", False, b"7" * 16),
        (b"00-" + b"4" * 32 + b"-" + b"7" * 16 + b"-03", b"0" * 32, 0.0, b"03", True, b"7" * 16),
    ],
)
def test_sampling_is_parent_based(
    traceparent: bytes | None,
    minted: bytes,
    sample: float,
    flags: bytes,
    sampled: bool,
    parent: bytes,
) -> None:
    ex = _exchange(method=b"GET")
    ex.traceparent = traceparent
    head = upstream_head(
        ex, RouteEntry.from_route(kit.route()), b"/", None, b"", minted, b"s" * 16, sample
    )
    assert b"-" + b"s" * 16 + b"-" + flags + b"\r\n" in head
    assert ex.trace is not None
    assert (ex.trace[1], ex.trace[2], ex.trace[3]) == (b"s" * 16, parent, sampled)
