"""Request-target parsing and path normalization (RFC 3986 §5.2.4, §6.2.2; RFC 9112 §3.2)."""

from __future__ import annotations

import random

import pytest

from courtyard.gateway import InvalidTarget, normalize_path, split_target
from courtyard.gateway._paths import host_key, parse_target

NORMALIZED = [
    # already normal: returned as is (fast path)
    (b"/", b"/"),
    (b"/apps/x/", b"/apps/x/"),
    (b"/apps/x/file.txt", b"/apps/x/file.txt"),
    (b"/a/b.c/d..e/...", b"/a/b.c/d..e/..."),
    (b"/a:b@c/!$&'()*+,;=", b"/a:b@c/!$&'()*+,;="),
    (b"/~user/a-b_c", b"/~user/a-b_c"),
    # dot-segments (RFC 3986 §5.2.4)
    (b"/a/./b", b"/a/b"),
    (b"/a/../b", b"/b"),
    (b"/a/b/..", b"/a/"),
    (b"/a/b/.", b"/a/b/"),
    (b"/a/b/../../c", b"/c"),
    (b"/apps/x/../y/", b"/apps/y/"),
    (b"/..a/b", b"/..a/b"),
    (b"/./", b"/"),
    (b"/.", b"/"),
    (b"/a/..", b"/"),
    # merged slashes
    (b"//", b"/"),
    (b"/a//b", b"/a/b"),
    (b"/a///b//", b"/a/b/"),
    (b"//apps//x//", b"/apps/x/"),
    # percent-encoded unreserved characters are decoded (RFC 3986 §6.2.2.2)
    (b"/%61%62c", b"/abc"),
    (b"/%7Euser", b"/~user"),
    (b"/a/%2e/b", b"/a/b"),
    (b"/a/%2e%2e/b", b"/b"),
    (b"/a/%2E%2E/b", b"/b"),
    (b"/a/.%2e/b", b"/b"),
    (b"/apps/x/%2e%2e/y", b"/apps/y"),
    (b"/a%2db", b"/a-b"),
    # other escapes stay, upper-cased (RFC 3986 §6.2.2.1)
    (b"/a%20b", b"/a%20b"),
    (b"/a%3fb", b"/a%3Fb"),
    (b"/a%25b", b"/a%25b"),
    (b"/%e2%82%ac", b"/%E2%82%AC"),
    (b"/%25%32%65", b"/%252e"),  # no double decoding
    # characters a path may not hold raw are encoded
    (b'/a"b', b"/a%22b"),
    (b"/a<b>", b"/a%3Cb%3E"),
    (b"/a{b}|^`", b"/a%7Bb%7D%7C%5E%60"),
    (b"/caf\xc3\xa9", b"/caf%C3%A9"),
]


@pytest.mark.parametrize(("raw", "expected"), NORMALIZED)
def test_normalize_path(raw: bytes, expected: bytes) -> None:
    assert normalize_path(raw) == expected


REFUSED = [
    (b"/a%2Fb", "encoded slash"),
    (b"/a%2fb", "encoded slash"),
    (b"/a%5Cb", "encoded backslash"),
    (b"/a%5cb", "encoded backslash"),
    (b"/a\\b", "backslash"),
    (b"/a%00b", "control"),
    (b"/a\x00b", "control"),
    (b"/a%0Ab", "control"),
    (b"/a%0d%0aX-Injected:%20x", "control"),
    (b"/a\x7fb", "control"),
    (b"/a%7Fb", "control"),
    (b"/a b", "space"),
    (b"/a\tb", "control"),
    (b"/a%", "cut short"),
    (b"/a%2", "cut short"),
    (b"/a%zz", "invalid percent"),
    (b"/a%g1", "invalid percent"),
    (b"/a%1", "cut short"),
    (b"/..", "above the root"),
    (b"/../etc/passwd", "above the root"),
    (b"/a/../../b", "above the root"),
    (b"/%2e%2e/etc", "above the root"),
    (b"/apps/x/%2E%2E/%2e%2e/%2e%2e/etc", "above the root"),
    (b"/a#frag", "fragment"),
    (b"a/b", "must start"),
    (b"", "must start"),
]


@pytest.mark.parametrize(("raw", "reason"), REFUSED)
def test_normalize_path_refuses(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidTarget) as caught:
        normalize_path(raw)
    assert caught.value.status == 400
    assert reason in str(caught.value)


def test_normalize_is_idempotent_and_stays_in_the_path_alphabet() -> None:
    # A seeded random walk over the interesting alphabet: whatever normalizes once is a fixed
    # point, never holds a dot-segment or an empty segment, and only holds path characters.
    rng = random.Random(20251122)
    pieces = [b"/", b"a", b".", b"..", b"%2e", b"%2E", b"%41", b"%20", b"~", b"//", b"%7e", b"b"]
    allowed = set(
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/%"
    )
    checked = 0
    for _ in range(3000):
        raw = b"/" + b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 8)))
        try:
            once = normalize_path(raw)
        except InvalidTarget:
            continue
        checked += 1
        assert normalize_path(once) == once
        assert set(once) <= allowed
        segments = once.split(b"/")[1:-1]
        assert b"." not in segments and b".." not in segments and b"" not in segments
    assert checked > 1000


TARGETS = [
    (b"/a/b?x=1&y=%2F", (None, b"/a/b", b"?x=1&y=%2F")),
    (b"/a?", (None, b"/a", b"?")),
    (b"/a?b?c", (None, b"/a", b"?b?c")),
    (b"/", (None, b"/", b"")),
    (b"http://example.com/p?q", (b"example.com", b"/p", b"?q")),
    (b"HTTP://Example.com:8080/p", (b"Example.com:8080", b"/p", b"")),
    (b"http://example.com", (b"example.com", b"/", b"")),
    (b"http://example.com?q=1", (b"example.com", b"/", b"?q=1")),
    (b"http://[::1]:80/x", (b"[::1]:80", b"/x", b"")),
]


@pytest.mark.parametrize(("target", "expected"), TARGETS)
def test_split_target(target: bytes, expected: tuple[bytes | None, bytes, bytes]) -> None:
    assert split_target(target) == expected


@pytest.mark.parametrize(
    "target",
    [
        b"*",
        b"example.com:443",
        b"https://example.com/",
        b"ftp://x/",
        b"http:///p",
        b"http://user@host/",
        b"/a#b",
        b"http://exa mple/",
    ],
)
def test_split_target_refuses(target: bytes) -> None:
    with pytest.raises(InvalidTarget):
        split_target(target)


@pytest.mark.parametrize(
    ("host", "key"),
    [
        (b"Example.COM", b"example.com"),
        (b"example.com:8080", b"example.com"),
        (b"example.com.", b"example.com"),
        (b"127.0.0.1:80", b"127.0.0.1"),
        (b"[::1]:8080", b"[::1]"),
        (b"[::1]", b"[::1]"),
        (b"x.apps.localhost", b"x.apps.localhost"),
    ],
)
def test_host_key(host: bytes, key: bytes) -> None:
    assert host_key(host) == key


@pytest.mark.parametrize("host", [b"", b"a b", b"a/b", b"a:b:c", b"[::1", b"a\\b", b"a@b"])
def test_host_key_refuses(host: bytes) -> None:
    with pytest.raises(InvalidTarget):
        host_key(host)


@pytest.mark.parametrize(
    "target",
    [raw for raw, _ in NORMALIZED if raw.startswith(b"/")]
    + [raw + b"?q=/../%2F&x" for raw, _ in NORMALIZED if raw.startswith(b"/")]
    + [target for target, _ in TARGETS],
)
def test_parse_target_fast_path_agrees_with_the_slow_one(target: bytes) -> None:
    authority, path, query = split_target(target)
    assert parse_target(target) == (authority, normalize_path(path), query)


@pytest.mark.parametrize("target", [raw for raw, _ in REFUSED] + [b"", b"?q", b"/a#b?c"])
def test_parse_target_refuses_what_the_slow_path_refuses(target: bytes) -> None:
    with pytest.raises(InvalidTarget):
        parse_target(target)
