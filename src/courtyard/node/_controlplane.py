"""The control plane's HTTP face: one FastAPI app with every package's router and one error shape.

Every answer that is not a success is an RFC 9457 problem document. Every ``/api/v1`` call
carries the node's admin token until IAM issues real credentials (default deny).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from courtyard import __version__
from courtyard.audit import Actor, AuditError, AuditEvent, AuditLog
from courtyard.audit import api as audit_api
from courtyard.catalog import CatalogError
from courtyard.catalog import api as catalog_api
from courtyard.core import problem
from courtyard.lifecycle import AppNotDeployable, DeployRefused, Lifecycle
from courtyard.lifecycle import api as lifecycle_api
from courtyard.runtime import AppNotRunning, SupervisorError

PROBLEM_JSON = "application/problem+json"
_OPEN_PATHS = frozenset({"/api/v1/openapi.json", "/api/v1/docs"})


def _problem_response(status: int, document: dict[str, Any], **headers: str) -> JSONResponse:
    return JSONResponse(document, status_code=status, media_type=PROBLEM_JSON, headers=headers)


ADMIN = Actor(kind="user", id="admin", auth="token")
_ANONYMOUS = Actor(kind="user", id="anonymous")


def build_api(
    lifecycle: Lifecycle,
    audit: AuditLog,
    admin_token: str,
    info: Callable[[], dict[str, Any]],
) -> FastAPI:
    """The control plane app: apps, catalog and audit APIs, node info, problem handlers."""
    app = FastAPI(
        title="Courtyard control plane",
        version=__version__,
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
    )
    token = admin_token.encode()

    @app.middleware("http")
    async def require_token(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        path = request.url.path
        if path.startswith("/api/") and path not in _OPEN_PATHS:
            header = request.headers.get("authorization", "")
            scheme, _, credential = header.partition(" ")
            # Constant-time comparison: no timing oracle on the token (OWASP ASVS V2.9.1).
            if scheme.lower() != "bearer" or not hmac.compare_digest(credential.encode(), token):
                # Every denied access decision is audited (DESIGN.md quality bars).
                await audit.record(
                    AuditEvent(
                        actor=_ANONYMOUS,
                        action="access.deny",
                        target=f"api:{request.method} {path}"[:200],
                        outcome="denied",
                        reason="no valid admin token" if header else "no credentials",
                        request_id=request.headers.get("x-request-id"),
                        details={"client": request.headers.get("x-forwarded-for", "")},
                    )
                )
                return _problem_response(
                    401,
                    dict(problem(401, "Unauthorized", "this API needs the node's admin token")),
                    **{"WWW-Authenticate": 'Bearer realm="courtyard"'},
                )
            request.state.actor = ADMIN
        return await call_next(request)

    app.include_router(lifecycle_api.router(lifecycle))
    app.include_router(catalog_api.router(lifecycle.catalog))
    app.include_router(audit_api.router(audit))

    @app.get("/api/v1/node", tags=["node"], summary="The node: version, URL, workers")
    async def node_info() -> dict[str, Any]:
        return info()

    @app.exception_handler(CatalogError)
    async def catalog_error(_: Request, exc: CatalogError) -> JSONResponse:
        status, document = catalog_api.problem_for(exc)
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
