"""The control plane's HTTP face: one FastAPI app with every package's router and one error shape.

Every answer that is not a success is an RFC 9457 problem document. Every ``/api/v1`` call
carries a bearer credential — the node's admin token, an API token or an OAuth access token —
and is refused unless the caller may make it (default deny). The sign-in pages, the launcher
and the OpenID provider are served from here too, through the gateway's one port.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from courtyard import __version__
from courtyard.audit import Actor, AuditError, AuditEvent, AuditLog
from courtyard.audit import api as audit_api
from courtyard.catalog import CatalogError
from courtyard.catalog import api as catalog_api
from courtyard.core import problem
from courtyard.iam import IamError, Principal
from courtyard.iam import api as iam_api
from courtyard.lifecycle import AppNotDeployable, DeployRefused, Lifecycle
from courtyard.lifecycle import api as lifecycle_api
from courtyard.node._apiauth import ApiAuthenticator, permits
from courtyard.runtime import AppNotRunning, SupervisorError

PROBLEM_JSON = "application/problem+json"
_OPEN_PATHS = frozenset({"/api/v1/openapi.json", "/api/v1/docs"})


def _problem_response(status: int, document: dict[str, Any], **headers: str) -> JSONResponse:
    return JSONResponse(document, status_code=status, media_type=PROBLEM_JSON, headers=headers)


_ANONYMOUS = Actor(kind="user", id="anonymous")


class CredentialSync(Protocol):
    """Where credential changes stand on their way to the gateway workers (IdentityFeed)."""

    def mark(self) -> int: ...

    async def settle(self, since: int, timeout: float = 1.0) -> None: ...


@dataclass(frozen=True)
class ApiExtras:
    """What IAM adds to the control plane: who callers are, its own routers, and the sync
    that holds an answer until the gateway enforces the credentials it changed."""

    authenticator: ApiAuthenticator
    routers: Sequence[APIRouter] = field(default_factory=tuple)
    credentials: CredentialSync | None = None


def actor_of(principal: Principal) -> Actor:
    """The audit trail's name for a caller."""
    return Actor(kind=principal.kind, id=principal.id, auth=principal.auth)


def build_api(
    lifecycle: Lifecycle,
    audit: AuditLog,
    admin_token: str,
    info: Callable[[], dict[str, Any]],
    extras: ApiExtras | None = None,
) -> FastAPI:
    """The control plane app: apps, catalog and audit APIs, node info, problem handlers, and
    (with ``extras``) the directory, OAuth clients, OpenID provider and portal."""
    app = FastAPI(
        title="Courtyard control plane",
        version=__version__,
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
    )
    authenticator = extras.authenticator if extras is not None else ApiAuthenticator(admin_token)

    async def deny(request: Request, actor: Actor, reason: str) -> None:
        # Every denied access decision is audited (DESIGN.md quality bars); never the credential.
        await audit.record(
            AuditEvent(
                actor=actor,
                action="access.deny",
                target=f"api:{request.method} {request.url.path}"[:200],
                outcome="denied",
                reason=reason,
                request_id=request.headers.get("x-request-id"),
                details={"client": request.headers.get("x-forwarded-for", "")},
            )
        )

    @app.middleware("http")
    async def require_credentials(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        path = request.url.path
        if path.startswith("/api/") and path not in _OPEN_PATHS:
            header = request.headers.get("authorization", "")
            principal = await authenticator.authenticate(header) if header else None
            if principal is None:
                await deny(
                    request, _ANONYMOUS, "invalid credentials" if header else "no credentials"
                )
                return _problem_response(
                    401,
                    dict(problem(401, "Unauthorized", "this API needs a valid bearer token")),
                    **{"WWW-Authenticate": 'Bearer realm="courtyard"'},
                )
            if not permits(principal, request.method, path):
                await deny(
                    request, actor_of(principal), "the caller's roles do not allow this call"
                )
                return _problem_response(
                    403, dict(problem(403, "Forbidden", "your roles do not allow this call"))
                )
            request.state.principal = principal
            request.state.actor = actor_of(principal)
        return await call_next(request)

    app.include_router(lifecycle_api.router(lifecycle))
    app.include_router(catalog_api.router(lifecycle.catalog))
    sync = extras.credentials if extras is not None else None
    if sync is not None:

        @app.middleware("http")
        async def settle_credentials(
            request: Request, call_next: Callable[[Request], Awaitable[Response]]
        ) -> Response:
            # A sign-in answers with a redirect into an app, a new token is used at once, a
            # revoked session must stop working: so a change reaches every gateway worker
            # before its answer leaves (at most a second; see IdentityFeed.settle).
            before = sync.mark()
            response = await call_next(request)
            await sync.settle(before)
            return response

    app.include_router(audit_api.router(audit))
    for extra in extras.routers if extras is not None else ():
        app.include_router(extra)

    @app.get("/api/v1/node", tags=["node"], summary="The node: version, URL, workers")
    async def node_info() -> dict[str, Any]:
        return info()

    @app.exception_handler(CatalogError)
    async def catalog_error(_: Request, exc: CatalogError) -> JSONResponse:
        status, document = catalog_api.problem_for(exc)
        return _problem_response(status, dict(document))

    @app.exception_handler(IamError)
    async def iam_error(_: Request, exc: IamError) -> JSONResponse:
        status, document = iam_api.problem_for(exc)
        return _problem_response(status, dict(document))

    @app.exception_handler(AuditError)
    async def audit_error(_: Request, exc: AuditError) -> JSONResponse:
        status, document = audit_api.problem_for(exc)
        return _problem_response(status, dict(document))

    @app.exception_handler(AppNotDeployable)
    async def not_deployable(_: Request, exc: AppNotDeployable) -> JSONResponse:
        return _problem_response(409, dict(problem(409, "Not runnable", str(exc))))

    @app.exception_handler(DeployRefused)
    async def deploy_refused(_: Request, exc: DeployRefused) -> JSONResponse:
        return _problem_response(400, dict(problem(400, "Bad deploy request", str(exc))))

    @app.exception_handler(AppNotRunning)
    async def not_running(_: Request, exc: AppNotRunning) -> JSONResponse:
        return _problem_response(409, dict(problem(409, "App not running", str(exc))))

    @app.exception_handler(SupervisorError)
    async def supervisor_error(_: Request, exc: SupervisorError) -> JSONResponse:
        return _problem_response(409, dict(problem(409, "Runtime refused", str(exc))))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg", "")}
            for e in exc.errors()
        ]
        return _problem_response(
            422,
            dict(
                problem(422, "Invalid request", "the request does not fit the API", errors=errors)
            ),
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "HTTP error")
        return _problem_response(
            exc.status_code, dict(problem(exc.status_code, title, str(exc.detail)))
        )

    return app
