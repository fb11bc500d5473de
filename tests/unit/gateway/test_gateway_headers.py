"""Header rules: framing values, hop-by-hop removal, request ids, traceparent, Accept."""

from __future__ import annotations

import pytest

from courtyard.gateway._headers import (
    DROP,
    REQUEST_KINDS,
    RESPONSE_KINDS,
    IdSource,
    accept_prefers_html,
    connection_tokens,
    is_chunked,
    is_valid_request_id,
    parse_content_length,
    parse_traceparent,
    without_fields,
)


@pytest.mark.parametrize(
    ("value", "length"),
    [
        (b"0", 0),
        (b"5", 5),
        (b" 12 ", 12),
        (b"0005", 5),
        (b"123456789012345678", 123456789012345678),
    ],
)
def test_content_length(value: bytes, length: int) -> None:
    assert parse_content_length(value) == length


@pytest.mark.parametrize(
    "value", [b"", b"-1", b"+5", b"1 2", b"0x10", b"5,5", b"1e3", b"1234567890123456789", b"\xd9"]
)
def test_content_length_refused(value: bytes) -> None:
    assert parse_content_length(value) is None


@pytest.mark.parametrize("value", [b"chunked", b"Chunked", b"CHUNKED", b" chunked "])
def test_chunked(value: bytes) -> None:
    assert is_chunked(value)


@pytest.mark.parametrize(
    "value",
    [
        b"chunked, identity",
        b"xchunked",
        b"chunked, chunked",
        b"identity",
        b"gzip, chunked",
        b",chunked",
        b"chunked;q=1",
        b"",
    ],
)
def test_not_plain_chunked(value: bytes) -> None:
    assert not is_chunked(value)


def test_hop_by_hop_and_gateway_fields_are_dropped_in_every_spelling() -> None:
    for name in (
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"proxy-authorization",
        b"proxy-authenticate",
    ):
        assert REQUEST_KINDS[name] == DROP
        assert RESPONSE_KINDS[name] == DROP
    # Connection, Upgrade and Transfer-Encoding are read, then rebuilt by the gateway.
    for name in (b"connection", b"upgrade", b"transfer-encoding", b"content-length"):
        assert REQUEST_KINDS[name] != DROP
        assert name in RESPONSE_KINDS
    for name in (
        b"courtyard-identity",
        b"courtyard_identity",
        b"forwarded",
        b"x-forwarded-for",
        b"x_forwarded_for",
        b"x-forwarded-host",
        b"x-forwarded-proto",
        b"x-forwarded-prefix",
        b"x_forwarded_prefix",
        b"x-real-ip",
    ):
        assert REQUEST_KINDS[name] == DROP
    assert b"tracestate" not in REQUEST_KINDS  # passed through


def test_connection_tokens_and_named_fields() -> None:
    tokens = connection_tokens(b"Keep-Alive, X-Secret ,, close")
    assert tokens == {b"keep-alive", b"x-secret", b"close"}
    parts = [b"X-Secret", b": ", b"1", b"\r\n", b"X-Other", b": ", b"2", b"\r\n"]
    assert without_fields(parts, {b"x-secret"}) == [b"X-Other", b": ", b"2", b"\r\n"]


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        (b"abc", True),
        (b"A1.b2_c3:d4-e5", True),
        (b"x" * 128, True),
        (b"x" * 129, False),
        (b"", False),
        (b"a b", False),
        (b"a/b", False),
        (b'a"b', False),
        (b"<script>", False),
        (b"\xff", False),
    ],
)
def test_request_id(value: bytes, valid: bool) -> None:
    assert is_valid_request_id(value) is valid


TRACE = b"4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        (b"00-" + TRACE + b"-00f067aa0ba902b7-01", (TRACE, b"00f067aa0ba902b7", b"01")),
        (b"00-" + TRACE + b"-00f067aa0ba902b7-00", (TRACE, b"00f067aa0ba902b7", b"00")),
        (b" 00-" + TRACE + b"-00f067aa0ba902b7-01 ", (TRACE, b"00f067aa0ba902b7", b"01")),
        (b"01-" + TRACE + b"-00f067aa0ba902b7-01-future", (TRACE, b"00f067aa0ba902b7", b"01")),
        (b"ff-" + TRACE + b"-00f067aa0ba902b7-01", None),
        (b"00-" + TRACE + b"-00f067aa0ba902b7-01-extra", None),
        (b"00-" + b"0" * 32 + b"-00f067aa0ba902b7-01", None),
        (b"00-" + TRACE + b"-0000000000000000-01", None),
        (b"00-" + TRACE.upper() + b"-00f067aa0ba902b7-01", None),
        (b"00-" + TRACE[:-1] + b"-00f067aa0ba902b7-01", None),
        (b"garbage", None),
        (b"-", None),
    ],
)
def test_traceparent(value: bytes, parsed: tuple[bytes, bytes] | None) -> None:
    assert parse_traceparent(value) == parsed


def test_ids_are_hex_and_fresh() -> None:
    source = IdSource()
    seen = set()
    for _ in range(1000):
        request_id, span = source.ids()
        assert len(request_id) == 32 and len(span) == 16
        int(request_id, 16)
        int(span, 16)
        seen.add(request_id)
    assert len(seen) == 1000


@pytest.mark.parametrize(
    ("accept", "html"),
    [
        (None, False),
        (b"", False),
        (b"*/*", False),
        (b"application/json", False),
        (b"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", True),
        (b"text/html", True),
        (b"application/json, text/html;q=0.5", False),
        (b"text/html;q=0.5, application/problem+json", False),
        (b"text/*, application/json;q=0.1", False),  # no "html" at all: problem JSON
        (b"text/html;q=0.9, */*;q=0.1", True),
        (b"text/html;q=bad", False),
    ],
)
def test_accept_prefers_html(accept: bytes | None, html: bool) -> None:
    assert accept_prefers_html(accept) is html
