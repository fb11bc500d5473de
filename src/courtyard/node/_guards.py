"""The control plane's two request guards as plain ASGI wrappers (Starlette's function
middleware copies every request and response body through a task: it cost a third of a
token grant's time).

``CredentialsGuard`` admits ``/api`` calls only with a bearer credential that allows them;
``SettleCredentials`` holds an answer until every gateway worker enforces the credentials
that request changed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from fastapi.responses import JSONResponse
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from courtyard.audit import Actor
from courtyard.core import problem
from courtyard.iam import Principal
from courtyard.node._apiauth import ApiAuthenticator, permits

PROBLEM_JSON = "application/problem+json"
OPEN_PATHS = frozenset({"/api/v1/openapi.json", "/api/v1/docs"})
ANONYMOUS = Actor(kind="user", id="anonymous")

Deny = Callable[[Request, Actor, str], Awaitable[Any]]


class CredentialSync(Protocol):
    """Where credential changes stand on their way to the gateway workers (IdentityFeed)."""

    def mark(self) -> int: ...

    async def settle(self, since: int, timeout: float = 1.0) -> None: ...


def actor_of(principal: Principal) -> Actor:
    """The audit trail's name for a caller."""
    return Actor(kind=principal.kind, id=principal.id, auth=principal.auth)


def problem_response(status: int, document: dict[str, Any], **headers: str) -> JSONResponse:
    return JSONResponse(document, status_code=status, media_type=PROBLEM_JSON, headers=headers)


class CredentialsGuard:
    """Authenticates and authorizes every ``/api`` call (default deny); others pass through."""

    def __init__(self, app: ASGIApp, authenticator: ApiAuthenticator, deny: Deny) -> None:
        self.app = app
        self.authenticator = authenticator
        self.deny = deny

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith("/api/") or path in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        header = ""
        for name, value in scope["headers"]:
            if name == b"authorization":
                header = value.decode("latin-1")
                break
        principal = await self.authenticator.authenticate(header) if header else None
        if principal is None:
            await self.deny(
                Request(scope), ANONYMOUS, "invalid credentials" if header else "no credentials"
            )
            answer = problem_response(
                401,
                dict(problem(401, "Unauthorized", "this API needs a valid bearer token")),
                **{"WWW-Authenticate": 'Bearer realm="courtyard"'},
            )
            await answer(scope, receive, send)
            return
        if not permits(principal, scope["method"], path):
            await self.deny(
                Request(scope), actor_of(principal), "the caller's roles do not allow this call"
            )
            answer = problem_response(
                403, dict(problem(403, "Forbidden", "your roles do not allow this call"))
            )
            await answer(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        actor = actor_of(principal)
        state["principal"] = principal
        state["actor"] = actor
        refused = False

        async def send_watched(message: Message) -> None:
            nonlocal refused
            if message["type"] == "http.response.start" and message["status"] == 403:
                refused = True
            await send(message)

        await self.app(scope, receive, send_watched)
        if refused:
            # A router's own refusal (e.g. a non-admin managing users) is a denied access
            # decision too, and every one of those is audited.
            await self.deny(Request(scope), actor, "the API refused the caller (403)")


class SettleCredentials:
    """Holds each response's head until the credentials its request changed are in force on
    every gateway worker (at most a second; see IdentityFeed.settle): a sign-in redirects
    straight into an app, a new token works at once, a revoked session is refused at once."""

    def __init__(self, app: ASGIApp, sync: CredentialSync) -> None:
        self.app = app
        self.sync = sync

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sync = self.sync
        before = sync.mark()

        async def send_settled(message: Message) -> None:
            if message["type"] == "http.response.start":
                await sync.settle(before)
            await send(message)

        await self.app(scope, receive, send_settled)
