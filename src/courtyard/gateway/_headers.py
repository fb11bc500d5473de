"""Header rules of the proxy: which fields it drops, replaces or reads, and the ids it mints.

Pure functions and tables; the protocols look a lowered field name up once and act on a small
integer, so the common header costs one dictionary probe.
"""

from __future__ import annotations

import os
import re

# What the request side does with a field (lower-cased name -> kind); absent means "forward".
FORWARD = 0
DROP = 1  # hop-by-hop (RFC 9110 §7.6.1) or a value the gateway itself sets
HOST = 2
CONTENT_LENGTH = 3
TRANSFER_ENCODING = 4
CONNECTION = 5
UPGRADE = 6
EXPECT = 7
REQUEST_ID = 8
TRACEPARENT = 9
ACCEPT = 10
COOKIE = 11  # read for the session; re-emitted without the platform's cookie
AUTHORIZATION = 12  # read for a bearer credential; re-emitted unless it is the platform's

# RFC 9110 §7.6.1 and RFC 9112 §7: connection-specific fields never cross a proxy. Fields the
# gateway sets itself are dropped too, in their "_" spellings as well, because some servers
# (CGI/WSGI) map "-" and "_" to the same variable and would let a client spoof them.
HOP_BY_HOP = (
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"te",
    b"trailer",
    b"transfer-encoding",
    b"upgrade",
    b"proxy-authorization",
    b"proxy-authenticate",
)
_GATEWAY_SET = (
    b"forwarded",
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
    b"x-forwarded-prefix",
    b"x-forwarded-port",
    b"x-real-ip",
    b"courtyard-identity",
    b"x-request-id",
)
# Lower-cased names with "-" -> DROP: any spelling with "_" for some "-" lands here.
_UNDERSCORED = dict.fromkeys(_GATEWAY_SET, DROP)


def _request_kinds() -> dict[bytes, int]:
    kinds = dict.fromkeys(HOP_BY_HOP, DROP)
    for name in _GATEWAY_SET:
        kinds[name] = DROP
        kinds[name.replace(b"-", b"_")] = DROP
    kinds.update(
        {
            b"host": HOST,
            b"content-length": CONTENT_LENGTH,
            b"transfer-encoding": TRANSFER_ENCODING,
            b"connection": CONNECTION,
            b"upgrade": UPGRADE,
            b"expect": EXPECT,
            b"x-request-id": REQUEST_ID,
            b"traceparent": TRACEPARENT,
            b"accept": ACCEPT,
            b"cookie": COOKIE,
            b"authorization": AUTHORIZATION,
        }
    )
    return kinds


REQUEST_KINDS = _request_kinds()


def request_kind(name: bytes) -> int | None:
    """What the request side does with field ``name`` (None: forward it as is).

    Names the gateway sets are matched case-insensitively with "_" and "-" taken as the same
    character (``X_Forwarded-For``, ``COURTYARD_IDENTITY``): the slow step runs only for
    unknown names that hold a "_".
    """
    lowered = name.lower()
    kind = REQUEST_KINDS.get(lowered)
    if kind is None and b"_" in lowered:
        kind = _UNDERSCORED.get(lowered.replace(b"_", b"-"))
    return kind


# The response side: framing and hop-by-hop fields are rebuilt by the gateway.
RESPONSE_KINDS: dict[bytes, int] = {
    **dict.fromkeys(HOP_BY_HOP, DROP),
    b"content-length": CONTENT_LENGTH,
    b"transfer-encoding": TRANSFER_ENCODING,
    b"connection": CONNECTION,
    b"upgrade": UPGRADE,
    b"x-request-id": REQUEST_ID,
}


def connection_tokens(value: bytes) -> set[bytes]:
    """The lower-cased option names of a Connection field value (RFC 9110 §7.6.1)."""
    return {token.strip().lower() for token in value.split(b",") if token.strip()}


# Tokens that name no other field; anything else in Connection names a field to remove.
CONNECTION_OPTIONS = frozenset((b"close", b"keep-alive", b"upgrade"))


def without_fields(parts: list[bytes], names: set[bytes]) -> list[bytes]:
    """``parts`` (groups of name, ": ", value, CRLF) less the groups whose name is in ``names``."""
    kept: list[bytes] = []
    for i in range(0, len(parts), 4):
        if parts[i].lower() not in names:
            kept += parts[i : i + 4]
    return kept


def is_chunked(value: bytes) -> bool:
    """True when a Transfer-Encoding value is exactly ``chunked`` (case-insensitive).

    RFC 9112 §6.1 allows codings before chunked; the gateway forwards none, so any other
    value, a list or a repeat is refused as ambiguous framing (§6.3 rule 4).
    """
    return value.strip(b" \t").lower() == b"chunked"


_DIGITS = re.compile(rb"[0-9]{1,18}").fullmatch


def parse_content_length(value: bytes) -> int | None:
    """The length a Content-Length value states, or None when it is not plain digits.

    RFC 9110 §8.6: 1*DIGIT; surrounding whitespace is not part of the value, signs, lists and
    inner spaces are refused (RFC 9112 §6.3 rule 5).
    """
    value = value.strip(b" \t")
    if _DIGITS(value) is None:
        return None
    return int(value)


_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,128}").fullmatch


def is_valid_request_id(value: bytes) -> bool:
    """True when a client-sent X-Request-Id may be kept (short, no separators, no spaces)."""
    return _REQUEST_ID(value) is not None


_TRACEPARENT = re.compile(rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_ZERO_TRACE = b"0" * 32
_ZERO_PARENT = b"0" * 16


def parse_traceparent(value: bytes) -> tuple[bytes, bytes, bytes] | None:
    """(trace-id, parent-id, flags) of a valid W3C traceparent, else None (Trace Context
    §3.2, §4.3).

    Version ``ff`` and all-zero ids are invalid; version 00 has exactly four fields; a later
    version may carry more, which is ignored.
    """
    match = _TRACEPARENT.fullmatch(value.strip(b" \t"))
    if match is None:
        return None
    version, trace_id, parent_id, flags, rest = match.groups()
    if version == b"ff" or (version == b"00" and rest is not None):
        return None
    if trace_id == _ZERO_TRACE or parent_id == _ZERO_PARENT:
        return None
    return trace_id, parent_id, flags


class IdSource:
    """Request ids and span ids: 128 and 64 random bits as hex.

    Random bytes come from the OS in batches (one system call per 512 requests) and are
    handed out as slices, which costs less than a PRNG call per request.
    """

    __slots__ = ("_hex", "_position")

    _BATCH = 512

    def __init__(self) -> None:
        self._hex = b""
        self._position = 0

    def ids(self) -> tuple[bytes, bytes]:
        """A fresh (32-hex id, 16-hex span id) pair."""
        position = self._position
        if position == len(self._hex):
            self._hex = os.urandom(24 * self._BATCH).hex().encode()
            position = 0
        self._position = position + 48
        text = self._hex
        return text[position : position + 32], text[position + 32 : position + 48]


def accept_prefers_html(accept: bytes | None) -> bool:
    """True when an Accept value ranks text/html above JSON (RFC 9110 §12.5.1).

    Browsers send ``text/html,...,*/*;q=0.8``; API clients send ``*/*`` or JSON, which keep
    the problem document.
    """
    if not accept or b"html" not in accept:
        return False
    html = json = 0.0
    html_rank = json_rank = -1  # specificity of the range that set the quality
    for item in accept.split(b","):
        media, _, params = item.partition(b";")
        media = media.strip().lower()
        quality = 1.0
        for param in params.split(b";"):
            key, _, raw = param.partition(b"=")
            if key.strip().lower() == b"q":
                try:
                    quality = float(raw.strip())
                except ValueError:
                    quality = 0.0
        rank_html = _rank(media, b"text", b"html")
        if rank_html > html_rank:
            html, html_rank = quality, rank_html
        rank_json = max(
            _rank(media, b"application", b"json"), _rank(media, b"application", b"problem+json")
        )
        if rank_json > json_rank:
            json, json_rank = quality, rank_json
    return html > json


def _rank(media: bytes, kind: bytes, sub: bytes) -> int:
    if media == kind + b"/" + sub:
        return 2
    if media == kind + b"/*":
        return 1
    if media == b"*/*":
        return 0
    return -1
