"""Request-target parsing and path normalization, done once per request before routing.

Routing and the app see the same normalized path, so an encoded dot-segment or slash cannot
make the gateway pick one route while the app serves another (RFC 3986 §5.2.4, §6.2.2).
"""

from __future__ import annotations

import re

from courtyard.gateway._config import InvalidTarget

# RFC 3986 §2.3 unreserved characters: their percent-encoded form is equivalent (§6.2.2.2).
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# RFC 3986 §3.3 pchar minus pct-encoded, plus "/": what may appear raw in a normalized path.
_PATH_RAW = _UNRESERVED | frozenset(b"!$&'()*+,;=:@/")
_HEX = frozenset(b"0123456789ABCDEFabcdef")

# Anything outside the raw path set, a dot-segment candidate or an empty segment needs the slow
# path; most real paths match none of these and are returned as they are.
_NEEDS_WORK = re.compile(rb"[^A-Za-z0-9\-._~!$&'()*+,;=:@/]|/\.|//").search

# The common request target in one match: segments that do not start with "." (no
# dot-segment, no empty segment), only raw path characters, an optional query, no fragment.
_PLAIN_TARGET = re.compile(
    rb"((?:/[A-Za-z0-9\-_~!$&'()*+,;=:@][A-Za-z0-9\-._~!$&'()*+,;=:@]*)+/?|/)(\?[^#]*)?"
).fullmatch

# RFC 3986 §3.2.2 host (reg-name, IPv4 or IP-literal) with an optional port (§3.2.3).
_HOST = re.compile(rb"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]+)(:[0-9]*)?").fullmatch


def normalize_path(path: bytes) -> bytes:
    """Return the normalized form of an absolute ``path`` (no query), or raise InvalidTarget.

    - percent-encoded unreserved characters are decoded and other escapes upper-cased
      (RFC 3986 §6.2.2.1-2), so ``%2e%2E`` is ``..``;
    - characters a path may not hold raw are percent-encoded;
    - an encoded slash or backslash, a raw backslash, NUL or any control character, a broken
      escape or a fragment is refused: they mean different things to different servers;
    - repeated slashes are merged and dot-segments removed (RFC 3986 §5.2.4); a path that
      climbs above the root is refused, as nginx does.
    """
    if path[:1] != b"/":
        raise InvalidTarget("the path must start with '/'")
    if _NEEDS_WORK(path) is None:
        return path
    return _remove_dot_segments(_normalize_characters(path))


def _normalize_characters(path: bytes) -> bytes:
    out = bytearray()
    i, n = 0, len(path)
    while i < n:
        c = path[i]
        if c == 0x25:  # "%"
            if i + 2 >= n:
                raise InvalidTarget("a percent-escape in the path is cut short")
            hi, lo = path[i + 1], path[i + 2]
            if hi not in _HEX or lo not in _HEX:
                raise InvalidTarget("the path holds an invalid percent-escape")
            value = int(path[i + 1 : i + 3], 16)
            if value in _UNRESERVED:
                out.append(value)
            elif value == 0x2F:
                raise InvalidTarget("the path holds an encoded slash (%2F)")
            elif value == 0x5C:
                raise InvalidTarget("the path holds an encoded backslash (%5C)")
            elif value < 0x20 or value == 0x7F:
                raise InvalidTarget("the path holds an encoded control character")
            else:
                out += b"%%%02X" % value
            i += 3
            continue
        if c == 0x5C:
            raise InvalidTarget("the path holds a backslash")
        if c < 0x21 or c == 0x7F:
            raise InvalidTarget("the path holds a control character or a space")
        if c == 0x23:
            raise InvalidTarget("the request target holds a fragment ('#')")
        if c in _PATH_RAW:
            out.append(c)
        else:
            out += b"%%%02X" % c
        i += 1
    return bytes(out)


def _remove_dot_segments(path: bytes) -> bytes:
    # RFC 3986 §5.2.4 on a path already free of escapes that could hide a "." or "/"; empty
    # segments are dropped as well (merged slashes).
    segments = path.split(b"/")[1:]
    kept: list[bytes] = []
    for segment in segments:
        if segment in (b"", b"."):
            continue
        if segment == b"..":
            if not kept:
                raise InvalidTarget("the path climbs above the root")
            kept.pop()
            continue
        kept.append(segment)
    if not kept:
        return b"/"
    trailing = segments[-1] in (b"", b".", b"..")
    return b"/" + b"/".join(kept) + (b"/" if trailing else b"")


def split_target(target: bytes) -> tuple[bytes | None, bytes, bytes]:
    """Split a request target into (authority or None, path, query with its '?' or b"").

    RFC 9112 §3.2: origin-form ``/path?query`` is the norm; absolute-form
    ``http://authority/path`` is accepted and its authority replaces Host (§3.2.2). Anything
    else (authority-form, asterisk-form, other schemes) is refused.
    """
    if b"#" in target:
        raise InvalidTarget("the request target holds a fragment ('#')")
    authority: bytes | None = None
    if target[:1] != b"/":
        if target[:7].lower() != b"http://":
            raise InvalidTarget("the request target must be a path (origin-form)")
        rest = target[7:]
        end = len(rest)
        for stop in (b"/", b"?"):
            found = rest.find(stop)
            if found != -1 and found < end:
                end = found
        authority = rest[:end]
        if not authority or b"@" in authority or _HOST(authority) is None:
            raise InvalidTarget("the request target has an invalid authority")
        target = rest[end:]
        if target[:1] != b"/":
            target = b"/" + target
    mark = target.find(b"?")
    if mark == -1:
        return authority, target, b""
    return authority, target[:mark], target[mark:]


def parse_target(target: bytes) -> tuple[bytes | None, bytes, bytes]:
    """split_target then normalize_path, with one regex match for targets already normal."""
    plain = _PLAIN_TARGET(target)
    if plain is not None:
        return None, plain.group(1), plain.group(2) or b""
    authority, path, query = split_target(target)
    return authority, normalize_path(path), query


def host_key(host: bytes) -> bytes:
    """The routing key of a Host value: lower case, port and a final dot removed.

    Raises InvalidTarget for a value that is not a host (RFC 9112 §3.2: answer 400).
    """
    match = _HOST(host)
    if match is None:
        raise InvalidTarget("the Host header is not a valid host")
    name = match.group(1).lower()
    if name.endswith(b".") and len(name) > 1:
        name = name[:-1]
    return name
