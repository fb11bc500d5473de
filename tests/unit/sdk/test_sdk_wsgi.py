"""The WSGI helper and middleware, called the way a WSGI server calls an app."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from courtyard.sdk import (
    IdentityWSGIMiddleware,
    InvalidIdentity,
    MissingIdentity,
    wsgi_identity,
)
from courtyard.sdk.testing import IdentityMinter, ManualClock


def _environ(path: str = "/", token: str | None = None) -> dict[str, Any]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "wsgi.input": io.BytesIO(),
    }
    if token is not None:
        environ["HTTP_COURTYARD_IDENTITY"] = token
    return environ


def _hello(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    identity = environ.get("courtyard.identity")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"Hello, {identity.name if identity else 'stranger'}".encode()]


def _call(app: Any, environ: dict[str, Any]) -> tuple[str, dict[str, str], bytes]:
    answer: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        answer["status"], answer["headers"] = status, dict(headers)

    body = b"".join(app(environ, start_response))
    return answer["status"], answer["headers"], body


def test_wsgi_identity_reads_the_header(minter: IdentityMinter) -> None:
    identity = wsgi_identity(_environ(token=minter.mint(name="Omar")), minter.verifier())
    assert identity.name == "Omar"


def test_wsgi_identity_without_header_raises_missing(minter: IdentityMinter) -> None:
    with pytest.raises(MissingIdentity):
        wsgi_identity(_environ(), minter.verifier())


def test_wsgi_identity_refuses_joined_repeated_headers(minter: IdentityMinter) -> None:
    joined = f"{minter.mint()},{minter.mint()}"
    with pytest.raises(InvalidIdentity, match="more than one"):
        wsgi_identity(_environ(token=joined), minter.verifier())


def test_the_middleware_greets_the_caller(minter: IdentityMinter) -> None:
    app = IdentityWSGIMiddleware(_hello, minter.verifier())
    status, _, body = _call(app, _environ(token=minter.mint(name="Omar")))
    assert (status, body) == ("200 OK", b"Hello, Omar")


def test_the_middleware_refuses_a_request_without_assertion(minter: IdentityMinter) -> None:
    status, headers, body = _call(IdentityWSGIMiddleware(_hello, minter.verifier()), _environ())
    assert status == "401 Unauthorized"
    assert headers["Content-Type"] == "application/problem+json"
    assert headers["Content-Length"] == str(len(body))
    assert json.loads(body)["status"] == 401


def test_the_middleware_refuses_a_bad_assertion(minter: IdentityMinter, now: ManualClock) -> None:
    token = minter.mint()
    now.advance(600)
    status, _, body = _call(
        IdentityWSGIMiddleware(_hello, minter.verifier()), _environ(token=token)
    )
    assert status == "401 Unauthorized"
    assert json.loads(body)["detail"].endswith("expired")


def test_health_checks_pass_without_assertion(minter: IdentityMinter) -> None:
    app = IdentityWSGIMiddleware(_hello, minter.verifier(), exempt_paths=("/healthz", "/ready"))
    for path in ("/healthz", "/ready"):
        assert _call(app, _environ(path))[0] == "200 OK"


def test_optional_identity_lets_anonymous_callers_in(minter: IdentityMinter) -> None:
    app = IdentityWSGIMiddleware(_hello, minter.verifier(), required=False)
    assert _call(app, _environ())[2] == b"Hello, stranger"
    assert _call(app, _environ(token="junk"))[0] == "401 Unauthorized"
