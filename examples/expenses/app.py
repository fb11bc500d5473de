"""Expense reports: a demo Starlette app that Courtyard runs as a child process.

It keeps its data in memory, so each replica has its own list; it reads ``PORT`` and
``COURTYARD_REVISION`` from the environment and builds links under ``X-Forwarded-Prefix``.
Every request but ``/healthz`` must carry the platform's ``Courtyard-Identity`` assertion,
checked by the SDK's middleware; the page greets the caller by name.
"""

from __future__ import annotations

import html
import itertools
import os
import re
import signal
import sys
from decimal import Decimal, InvalidOperation
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from courtyard.sdk import (
    AsyncMeshClient,
    Identity,
    IdentityError,
    IdentityMiddleware,
    IdentityVerifier,
    MeshError,
    TracingMiddleware,
    exporter_from_env,
    from_environment,
)

APP_NAME = "expenses"
CURRENCY = re.compile(r"[A-Z]{3}")
# A prefix is echoed into HTML, so accept only plain path characters.
SAFE_PREFIX = re.compile(r"(/[A-Za-z0-9._~-]+)+")
MAX_DESCRIPTION = 200

SEED = [
    {"description": "Train to Lyon", "amount": "84.20", "currency": "EUR", "submittedBy": "dana"},
    {"description": "Team lunch", "amount": "126.00", "currency": "EUR", "submittedBy": "sam"},
    {
        "description": "Conference ticket",
        "amount": "450.00",
        "currency": "USD",
        "submittedBy": "li",
    },
]


class ProblemResponse(JSONResponse):
    """A problem document (RFC 9457)."""

    media_type = "application/problem+json"

    def __init__(self, status: int, title: str, detail: str, **extra: Any) -> None:
        body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
        super().__init__({**body, **extra}, status_code=status)


class ExpenseBook:
    """The in-memory list of expenses of one process."""

    def __init__(self, seed: list[dict[str, str]]) -> None:
        self._ids = itertools.count(1)
        self._items: list[dict[str, Any]] = []
        for item in seed:
            self.add(item)

    def add(self, fields: dict[str, str]) -> dict[str, Any]:
        expense = {"id": next(self._ids), **fields}
        self._items.append(expense)
        return expense

    def all(self) -> list[dict[str, Any]]:
        return list(self._items)


def validate_expense(
    payload: Any, submitter: str = "anonymous"
) -> tuple[dict[str, str], list[dict[str, str]]]:
    """Check a submitted expense; return the clean fields and a list of field errors.

    ``submittedBy`` defaults to ``submitter``, the caller's name."""
    if not isinstance(payload, dict):
        return {}, [{"field": "", "message": "expected a JSON object"}]
    errors: list[dict[str, str]] = []
    clean: dict[str, str] = {}
    allowed = {"description", "amount", "currency", "submittedBy"}
    errors += [{"field": k, "message": "unknown field"} for k in sorted(set(payload) - allowed)]

    description = payload.get("description")
    if not isinstance(description, str) or not description.strip():
        errors.append({"field": "description", "message": "expected a non-empty string"})
    elif len(description) > MAX_DESCRIPTION:
        errors.append({"field": "description", "message": f"at most {MAX_DESCRIPTION} chars"})
    else:
        clean["description"] = description.strip()

    amount = payload.get("amount")
    try:
        if isinstance(amount, bool) or not isinstance(amount, int | float | str):
            raise InvalidOperation
        value = Decimal(str(amount))
        if not value.is_finite() or value <= 0 or value != value.quantize(Decimal("0.01")):
            raise InvalidOperation
        clean["amount"] = f"{value:.2f}"
    except InvalidOperation:
        errors.append({"field": "amount", "message": "expected a positive amount, 2 decimals max"})

    currency = payload.get("currency", "EUR")
    if isinstance(currency, str) and CURRENCY.fullmatch(currency):
        clean["currency"] = currency
    else:
        errors.append({"field": "currency", "message": "expected an ISO 4217 code like EUR"})

    submitted_by = payload.get("submittedBy", submitter)
    if isinstance(submitted_by, str) and 0 < len(submitted_by) <= 100:
        clean["submittedBy"] = submitted_by
    else:
        errors.append({"field": "submittedBy", "message": "expected a string of 1-100 chars"})
    return clean, errors


def forwarded_prefix(request: Request) -> str:
    """The path the gateway stripped, or "" when called directly or given something odd."""
    prefix = request.headers.get("x-forwarded-prefix", "").rstrip("/")
    return prefix if SAFE_PREFIX.fullmatch(prefix) else ""


def caller(request: Request) -> Identity:
    """Who is calling: put there by IdentityMiddleware, which refuses requests without one."""
    identity: Identity = request.state.identity
    return identity


class FaultInjection:
    """Answers 500 to a share of requests (``FAIL_RATIO``), evenly spread: how a fault drill
    makes a bad revision. /healthz never fails, so the bad revision still rolls out."""

    def __init__(self, app: Any, ratio: float) -> None:
        self.app = app
        self.ratio = min(max(ratio, 0.0), 1.0)
        self.seen = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self.ratio > 0 and scope["path"] != "/healthz":
            self.seen += 1
            if int(self.seen * self.ratio) != int((self.seen - 1) * self.ratio):
                failure = ProblemResponse(500, "Injected fault", f"FAIL_RATIO={self.ratio}")
                await failure(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(
    revision: str,
    verifier: IdentityVerifier,
    mesh: AsyncMeshClient | None = None,
    *,
    exporter: Any = None,
    fail_ratio: float = 0.0,
) -> Starlette:
    """Build the app; nothing here reads the environment or opens a socket.

    With ``mesh`` the app asks the notes app, through the platform's mesh and on behalf of
    the signed-in user, how many team notes there are (its manifest declares that call)."""
    book = ExpenseBook(SEED)

    async def team_notes(identity: Identity) -> dict[str, Any]:
        if mesh is None:
            return {"available": False, "reason": "no mesh (running outside Courtyard)"}
        try:
            answer = await mesh.call("notes", "/notes", on_behalf_of=identity, timeout=2.0)
            return {"available": True, "count": len(answer.json())}
        except (MeshError, ValueError) as exc:
            return {"available": False, "reason": str(exc)[:200]}

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def home(request: Request) -> Response:
        prefix = html.escape(forwarded_prefix(request))
        rows = "".join(
            f"<tr><td>{e['id']}</td><td>{html.escape(e['description'])}</td>"
            f"<td>{e['amount']} {e['currency']}</td><td>{html.escape(e['submittedBy'])}</td></tr>"
            for e in book.all()
        )
        name = html.escape(caller(request).display_name)
        notes = await team_notes(caller(request))
        notes_line = (
            f"{notes['count']} team notes (from the notes app, through the mesh)"
            if notes["available"]
            else "Team notes are not available right now."
        )
        page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Expense reports</title></head>
<body>
<h1>Expense reports</h1>
<p class="greeting">Hello, {name}</p>
<p>Revision <code>{html.escape(revision)}</code></p>
<p class="notes">{html.escape(notes_line)}</p>
<table><tr><th>#</th><th>Description</th><th>Amount</th><th>By</th></tr>{rows}</table>
<p><a href="{prefix}/api/expenses">JSON API</a> · <a href="{prefix}/healthz">health</a></p>
</body></html>
"""
        return HTMLResponse(page)

    async def list_expenses(request: Request) -> Response:
        return JSONResponse(book.all())

    async def notes_summary(request: Request) -> Response:
        return JSONResponse(await team_notes(caller(request)))

    async def me(request: Request) -> Response:
        identity = caller(request)
        return JSONResponse(
            {
                "greeting": f"Hello, {identity.display_name}",
                "sub": identity.sub,
                "email": identity.email,
                "name": identity.name,
                "groups": list(identity.groups),
                "roles": list(identity.roles),
                "act": identity.act,
            }
        )

    async def create_expense(request: Request) -> Response:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return ProblemResponse(415, "Unsupported Media Type", "send application/json")
        try:
            payload = await request.json()
        except ValueError:
            return ProblemResponse(400, "Bad Request", "the body is not valid JSON")
        clean, errors = validate_expense(payload, caller(request).display_name)
        if errors:
            return ProblemResponse(
                422, "Unprocessable Content", "the expense has invalid fields", errors=errors
            )
        expense = book.add(clean)
        location = f"{forwarded_prefix(request)}/api/expenses/{expense['id']}"
        return JSONResponse(expense, status_code=201, headers={"Location": location})

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return ProblemResponse(exc.status_code, exc.detail, f"{request.method} {request.url.path}")

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/", home),
            Route("/api/expenses", list_expenses, methods=["GET"]),
            Route("/api/expenses", create_expense, methods=["POST"]),
            Route("/api/me", me, methods=["GET"]),
            Route("/api/team-notes", notes_summary, methods=["GET"]),
        ],
        # /healthz stays open: the platform's health checks call it directly.
        middleware=[
            # Outermost: the span covers everything, injected faults included.
            Middleware(TracingMiddleware, exporter=exporter),
            Middleware(FaultInjection, ratio=fail_ratio),
            Middleware(IdentityMiddleware, verifier=verifier, exempt_paths=["/healthz"]),
        ],
        exception_handlers={HTTPException: http_error},
    )


def handle_sigterm(signum: int, frame: object) -> None:
    """Uvicorn re-raises the signal after its graceful shutdown; by then we only exit 0."""


def main() -> None:
    port = int(os.environ.get("PORT", "8000"))
    revision = os.environ.get("COURTYARD_REVISION", "dev")
    try:
        # COURTYARD_PLATFORM_URL (whose JWKS signs assertions) and COURTYARD_APP (our name).
        verifier = from_environment()
    except IdentityError as exc:
        sys.exit(f"expenses: {exc}")
    # COURTYARD_MESH_URL and COURTYARD_WORKLOAD_CREDENTIAL: set when the platform runs us.
    mesh = AsyncMeshClient.from_environment() if os.environ.get("COURTYARD_MESH_URL") else None
    signal.signal(signal.SIGTERM, handle_sigterm)
    signal.signal(signal.SIGINT, handle_sigterm)
    config = uvicorn.Config(
        create_app(
            revision,
            verifier,
            mesh,
            exporter=exporter_from_env(),
            fail_ratio=float(os.environ.get("FAIL_RATIO", "0") or 0),
        ),
        host="127.0.0.1",
        port=port,
        log_level="info",
        access_log=True,  # one line per request, on stdout
        timeout_graceful_shutdown=5,
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
