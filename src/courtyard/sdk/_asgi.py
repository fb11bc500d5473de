"""ASGI middleware that verifies the ``Courtyard-Identity`` assertion of every request and
hands the app the caller, so Starlette, FastAPI or any ASGI app reads it from the scope."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from courtyard.contracts import IDENTITY_HEADER
from courtyard.sdk._errors import IdentityError, InvalidIdentity, MissingIdentity
from courtyard.sdk._identity import Identity
from courtyard.sdk._problems import problem
from courtyard.sdk._verifier import IdentityVerifier

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SCOPE_KEY = "courtyard.identity"
HEALTH_PATHS = ("/healthz",)
_HEADER = IDENTITY_HEADER.lower().encode("latin-1")


class IdentityMiddleware:
    """Wraps an ASGI app: each HTTP or WebSocket request's caller ends up in
    ``scope["courtyard.identity"]`` and ``scope["state"]["identity"]`` (Starlette's
    ``request.state.identity``), or the request is refused.

    Without an assertion: 401 problem document, unless ``required`` is False (then the
    identity is None) or the path is in ``exempt_paths`` (health checks, which the platform
    makes directly). A bad assertion is always refused; it is never read as "anonymous".
    """

    def __init__(
        self,
        app: ASGIApp,
        verifier: IdentityVerifier,
        *,
        required: bool = True,
        exempt_paths: Iterable[str] = HEALTH_PATHS,
    ) -> None:
        self.app = app
        self.verifier = verifier
        self.required = required
        self.exempt_paths = frozenset(exempt_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope.get("path") in self.exempt_paths:
            await self.app(scope, receive, send)
            return
        try:
            identity = await self._identity(scope)
        except IdentityError as exc:
            await _refuse(scope, send, exc)
            return
        state = dict(scope.get("state") or {})
        state["identity"] = identity
        await self.app({**scope, "state": state, SCOPE_KEY: identity}, receive, send)

    async def _identity(self, scope: Scope) -> Identity | None:
        values = [value for name, value in scope.get("headers", ()) if name.lower() == _HEADER]
        if not values:
            if self.required:
                raise MissingIdentity()
            return None
        if len(values) > 1:
            raise InvalidIdentity("the request carries more than one assertion")
        return await self.verifier.averify(bytes(values[0]).strip())


async def _refuse(scope: Scope, send: Send, error: IdentityError) -> None:
    if scope["type"] == "websocket":
        # Closing before accepting makes the server answer the handshake with 403.
        await send({"type": "websocket.close", "code": 1008, "reason": "identity required"})
        return
    status, headers, body = problem(error)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(name.lower().encode(), value.encode()) for name, value in headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


def scope_identity(scope: Scope) -> Identity | None:
    """The caller :class:`IdentityMiddleware` put in ``scope`` (None if anonymous or absent)."""
    identity = scope.get(SCOPE_KEY)
    return identity if isinstance(identity, Identity) else None
