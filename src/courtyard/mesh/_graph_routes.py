"""``GET /api/v1/graph``: the dependency graph for ``courtyard graph`` and anyone signed in.

Reading the fleet's wiring needs any authenticated caller, as listing the apps does; the
node's credentials guard authenticates, and this router refuses a request it did not.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from courtyard.catalog import App
from courtyard.core import problem
from courtyard.iam import Principal
from courtyard.mesh._graph import (
    EVENTS_APP,
    GraphFormat,
    build_graph,
    policies_of,
    render_dot,
    render_mermaid,
)

__all__ = ["graph_router"]

# Graphviz's registered media type (IANA, text/vnd.graphviz); Mermaid has none: plain text.
DOT_MEDIA_TYPE = "text/vnd.graphviz"


def graph_router(
    apps: Callable[[], Awaitable[list[App]]],
    seen: Callable[[], set[str]],
    *,
    events_app: str = EVENTS_APP,
) -> APIRouter:
    """The graph route over the catalog's apps (``apps``, e.g. ``Catalog.list``) and the
    edges the gateway workers reported since the node started (``seen``)."""
    api = APIRouter(prefix="/api/v1", tags=["mesh"])

    @api.get("/graph", summary="The dependency graph of calls and events", response_model=None)
    async def graph_document(
        request: Request, format: Annotated[GraphFormat, Query()] = "json"
    ) -> Response | dict[str, Any]:
        if not isinstance(getattr(request.state, "principal", None), Principal):
            refusal = problem(401, "Unauthorized", "this API needs a valid bearer token")
            return JSONResponse(
                dict(refusal),
                status_code=401,
                media_type="application/problem+json",
                headers={"WWW-Authenticate": 'Bearer realm="courtyard"'},
            )
        graph = build_graph(policies_of(await apps()), seen(), events_app=events_app)
        if format == "mermaid":
            return PlainTextResponse(render_mermaid(graph))
        if format == "dot":
            return PlainTextResponse(render_dot(graph), media_type=DOT_MEDIA_TYPE)
        return dict(graph)

    return api
