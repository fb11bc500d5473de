"""The route table: longest prefix, host-bound routes, the trailing-slash redirect."""

from __future__ import annotations

import gateway_testkit as kit
import pytest

from courtyard.gateway._routing import RouteTable

TABLE = RouteTable(
    [
        kit.route("root", "/", strip_prefix=False),
        kit.route("apps", "/apps/"),
        kit.route("x", "/apps/x/"),
        kit.route("x-deep", "/apps/x/api/v1/"),
        kit.route("x-host", "/apps/x/", host="x.example.com"),
        kit.route("host-root", "/", host="h.example.com", strip_prefix=False),
        kit.route("dup", "/apps/x/"),  # same prefix again: the first one wins
    ]
)


@pytest.mark.parametrize(
    ("host", "path", "app", "redirect"),
    [
        (None, b"/", "root", False),
        (None, b"/other", "root", False),
        (None, b"/apps/", "apps", False),
        (None, b"/apps/y/z", "apps", False),
        (None, b"/apps/x/", "x", False),
        (None, b"/apps/x/a/b", "x", False),
        (None, b"/apps/xy/", "apps", False),
        (None, b"/apps/x/api/v1/users", "x-deep", False),
        (None, b"/apps/x/api/v2/users", "x", False),
        (None, b"/apps/x", "x", True),
        (None, b"/apps/x/api/v1", "x-deep", True),
        (None, b"/apps", "apps", True),
        (b"x.example.com", b"/apps/x/a", "x-host", False),
        (b"x.example.com", b"/apps/x", "x-host", True),
        (b"x.example.com", b"/apps/x/api/v1/a", "x-deep", False),  # longer beats host
        (b"x.example.com", b"/other", "root", False),
        (b"h.example.com", b"/other", "host-root", False),
        (b"h.example.com", b"/apps/x/", "x", False),
        (b"other.example.com", b"/apps/x/", "x", False),
    ],
)
def test_match(host: bytes | None, path: bytes, app: str, redirect: bool) -> None:
    found = TABLE.match(host, path)
    assert found is not None
    entry, is_redirect = found
    assert (entry.app, is_redirect) == (app, redirect)


def test_no_match_without_a_catch_all() -> None:
    table = RouteTable([kit.route("x", "/apps/x/")])
    assert table.match(None, b"/") is None
    assert table.match(None, b"/apps/") is None
    assert table.match(None, b"/apps/xy") is None
    assert table.match(b"x.example.com", b"/apps/y/") is None
    assert not table.has_hosts


def test_host_routes_match_only_their_host() -> None:
    table = RouteTable([kit.route("x", "/", host="X.Example.com")])
    assert table.has_hosts
    assert table.match(b"x.example.com", b"/a") is not None
    assert table.match(b"y.example.com", b"/a") is None
    assert table.match(None, b"/a") is None


@pytest.mark.parametrize(
    ("prefix", "strip", "path", "upstream", "header"),
    [
        ("/apps/x/", True, b"/apps/x/a/b", b"/a/b", b"X-Forwarded-Prefix: /apps/x\r\n"),
        ("/apps/x/", True, b"/apps/x/", b"/", b"X-Forwarded-Prefix: /apps/x\r\n"),
        ("/apps/x/", False, b"/apps/x/a", b"/apps/x/a", b""),
        ("/", True, b"/a", b"/a", b""),
    ],
)
def test_upstream_path(
    prefix: str, strip: bool, path: bytes, upstream: bytes, header: bytes
) -> None:
    entry = RouteTable([kit.route("x", prefix, strip_prefix=strip)]).match(None, path)
    assert entry is not None
    assert entry[0].upstream_path(path) == upstream
    assert entry[0].prefix_header == header
