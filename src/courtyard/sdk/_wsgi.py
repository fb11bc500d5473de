"""The same identity check for WSGI apps (Flask, Django, bare ``wsgiref``): a function to call
per request, and a middleware that calls it for every request."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from courtyard.contracts import IDENTITY_HEADER
from courtyard.sdk._errors import IdentityError, InvalidIdentity, MissingIdentity
from courtyard.sdk._identity import Identity
from courtyard.sdk._problems import problem
from courtyard.sdk._verifier import IdentityVerifier

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

ENVIRON_KEY = "courtyard.identity"
HEALTH_PATHS = ("/healthz",)
_ENVIRON_HEADER = "HTTP_" + IDENTITY_HEADER.upper().replace("-", "_")


def wsgi_identity(environ: Environ, verifier: IdentityVerifier) -> Identity:
    """The caller of the request ``environ`` describes; raises MissingIdentity, InvalidIdentity
    (or JwksUnavailable)."""
    token = environ.get(_ENVIRON_HEADER, "").strip()
    if not token:
        raise MissingIdentity()
    # Servers join repeated headers with ","; a JWT never holds one.
    if "," in token:
        raise InvalidIdentity("the request carries more than one assertion")
    return verifier.verify(token)


class IdentityWSGIMiddleware:
    """Wraps a WSGI app: ``environ["courtyard.identity"]`` holds the caller, or the request is
    refused with a 401 problem document (rules as :class:`IdentityMiddleware`)."""

    def __init__(
        self,
        app: WSGIApp,
        verifier: IdentityVerifier,
        exempt_paths: Iterable[str] = HEALTH_PATHS,
        *,
        required: bool = True,
    ) -> None:
        self.app = app
        self.verifier = verifier
        self.exempt_paths = frozenset(exempt_paths)
        self.required = required

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "/") in self.exempt_paths:
            return self.app(environ, start_response)
        try:
            environ[ENVIRON_KEY] = wsgi_identity(environ, self.verifier)
        except MissingIdentity as exc:
            if self.required:
                return _refuse(start_response, exc)
            environ[ENVIRON_KEY] = None
        except IdentityError as exc:
            return _refuse(start_response, exc)
        return self.app(environ, start_response)


def _refuse(start_response: StartResponse, error: IdentityError) -> list[bytes]:
    status, headers, body = problem(error)
    reason = "Service Unavailable" if status == 503 else "Unauthorized"
    start_response(f"{status} {reason}", headers)
    return [body]
