"""The control plane's HTTP face: one FastAPI app with every package's router and one error shape.

Every answer that is not a success is an RFC 9457 problem document. Every ``/api/v1`` call
carries a bearer credential — the node's admin token, an API token or an OAuth access token —
and is refused unless the caller may make it (default deny). The sign-in pages, the launcher
and the OpenID provider are served from here too, through the gateway's one port.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from courtyard import __version__
from courtyard.audit import Actor, AuditError, AuditEvent, AuditLog
from courtyard.audit import api as audit_api
from courtyard.catalog import CatalogError
from courtyard.catalog import api as catalog_api
from courtyard.core import problem
from courtyard.iam import IamError
from courtyard.iam import api as iam_api
from courtyard.lifecycle import AppNotDeployable, DeployRefused, Lifecycle, NoEarlierRevision
from courtyard.lifecycle import api as lifecycle_api
from courtyard.node._apiauth import ApiAuthenticator
from courtyard.node._guards import (
    CredentialsGuard,
    CredentialSync,
    SettleCredentials,
    problem_response,
)
from courtyard.node._logcontext import LogContextMiddleware
from courtyard.runtime import AppNotRunning, SupervisorError


@dataclass(frozen=True)
class ApiExtras:
    """What IAM adds to the control plane: who callers are, its own routers, and the sync
    that holds an answer until the gateway enforces the credentials it changed."""

    authenticator: ApiAuthenticator
    routers: Sequence[APIRouter] = field(default_factory=tuple)
    credentials: CredentialSync | None = None


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

    app.add_middleware(CredentialsGuard, authenticator=authenticator, deny=deny)
    sync = extras.credentials if extras is not None else None
    if sync is not None:
        app.add_middleware(SettleCredentials, sync=sync)
    app.add_middleware(LogContextMiddleware)  # outermost: every log line of a request

    app.include_router(lifecycle_api.router(lifecycle))
    app.include_router(catalog_api.router(lifecycle.catalog))
    app.include_router(audit_api.router(audit))
    for extra in extras.routers if extras is not None else ():
        app.include_router(extra)

    @app.get("/api/v1/node", tags=["node"], summary="The node: version, URL, workers")
    async def node_info() -> dict[str, Any]:
        return info()

    @app.exception_handler(CatalogError)
    async def catalog_error(_: Request, exc: CatalogError) -> JSONResponse:
        status, document = catalog_api.problem_for(exc)
        return problem_response(status, dict(document))

    @app.exception_handler(IamError)
    async def iam_error(_: Request, exc: IamError) -> JSONResponse:
        status, document = iam_api.problem_for(exc)
        return problem_response(status, dict(document))

    @app.exception_handler(AuditError)
    async def audit_error(_: Request, exc: AuditError) -> JSONResponse:
        status, document = audit_api.problem_for(exc)
        return problem_response(status, dict(document))

    @app.exception_handler(AppNotDeployable)
    async def not_deployable(_: Request, exc: AppNotDeployable) -> JSONResponse:
        return problem_response(409, dict(problem(409, "Not runnable", str(exc))))

    @app.exception_handler(NoEarlierRevision)
    async def no_earlier(_: Request, exc: NoEarlierRevision) -> JSONResponse:
        return problem_response(409, dict(problem(409, "Nothing to roll back to", str(exc))))

    @app.exception_handler(DeployRefused)
    async def deploy_refused(_: Request, exc: DeployRefused) -> JSONResponse:
        return problem_response(400, dict(problem(400, "Bad deploy request", str(exc))))

    @app.exception_handler(AppNotRunning)
    async def not_running(_: Request, exc: AppNotRunning) -> JSONResponse:
        return problem_response(409, dict(problem(409, "App not running", str(exc))))

    @app.exception_handler(SupervisorError)
    async def supervisor_error(_: Request, exc: SupervisorError) -> JSONResponse:
        return problem_response(409, dict(problem(409, "Runtime refused", str(exc))))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg", "")}
            for e in exc.errors()
        ]
        return problem_response(
            422,
            dict(
                problem(422, "Invalid request", "the request does not fit the API", errors=errors)
            ),
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "HTTP error")
        return problem_response(
            exc.status_code, dict(problem(exc.status_code, title, str(exc.detail)))
        )

    return app
