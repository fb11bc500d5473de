"""The dependency graph: hand-written manifests in a memory catalog → edges and their marks,
the Mermaid and dot texts, the API route and ``courtyard graph`` against a loopback node."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from fastapi import FastAPI, Request
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.responses import Response
from typer.testing import CliRunner

from courtyard.catalog import App, Catalog, MemoryCatalogStore, parse_manifest
from courtyard.cli._graph import register
from courtyard.core import FakeClock
from courtyard.iam import Principal
from courtyard.lifecycle import mesh_policy
from courtyard.mesh._graph import (
    GraphDocument,
    build_graph,
    graph_from_document,
    is_refused,
    policies_of,
    render,
    render_dot,
    render_mermaid,
)
from courtyard.mesh._graph_routes import graph_router


def manifest(name: str, spec: str = "") -> str:
    return (
        "apiVersion: courtyard.dev/v1alpha1\nkind: Application\n"
        f"metadata: {{name: {name}, owner: team-a, businessOwner: a@example.com}}\n"
        "spec:\n  run: {command: [python, app.py]}\n" + spec
    )


FLEET = {
    "expenses": """\
  consumes:
    - {service: ledger, paths: ["/entries/**"], methods: [GET, POST]}
    - {service: mailer, paths: [/send], methods: [POST]}
  publishes: [expense.submitted]
""",
    "ledger": """\
  accepts: [{from: expenses, paths: ["/entries/**"], methods: [GET]}]
  subscribes: [{topic: expense.submitted, handler: /events/expense}]
""",
    "mailer": """\
  accepts: [{from: billing}]
  subscribes:
    - {topic: expense.submitted, handler: /hooks/expense}
    - {topic: invoice.paid, handler: /hooks/invoice}
""",
    "reports": """\
  consumes: [{service: ledger, paths: ["/reports/*"]}]
""",
}


@pytest.fixture
async def catalog() -> Catalog:
    catalog = Catalog(MemoryCatalogStore(), clock=FakeClock(start=1_700_000_000.0))
    for name, spec in FLEET.items():
        await catalog.register(parse_manifest(manifest(name, spec)))
    return catalog


@pytest.fixture
async def apps(catalog: Catalog) -> list[App]:
    return await catalog.list()


def _edge(source: str, target: str, kind: str, **marks: bool) -> dict[str, Any]:
    found = {"declared": True, "refused_by_target": False, "seen": False} | marks
    return {"from": source, "to": target, "kind": kind, **found}


def test_policies_come_from_the_manifests(apps: list[App]) -> None:
    policies = policies_of(apps)
    assert policies["ledger"] == {
        "consumes": [],
        "accepts": [{"caller": "expenses", "paths": ["/entries/**"], "methods": ["GET"]}],
        "publishes": [],
        "subscribes": [{"topic": "expense.submitted", "handler": "/events/expense"}],
    }
    assert policies["expenses"]["accepts"] is None
    assert policies["reports"]["consumes"] == [
        {"service": "ledger", "paths": ["/reports/*"], "methods": ["*"]}
    ]


def test_declared_edges_are_marked_with_refusals_and_use(apps: list[App]) -> None:
    seen = {
        "expenses>ledger",
        "expenses>_events/expense.submitted",
        "_events/expense.submitted>mailer",  # recorded by the event bus on delivery
        "courtyard>ledger",  # a delivery; ledger has one subscription, so it is that one
        "courtyard>mailer",  # a delivery to one of two subscriptions: which is unknown
        "rogue>ledger",  # traffic no manifest declares, from an app not in the catalog
        "ledger>_events/audit.trail",
        "garbage",
    }
    graph = build_graph(policies_of(apps), seen)
    assert graph["edges"] == [
        _edge("expenses", "ledger", "call", seen=True),
        _edge("expenses", "mailer", "call", refused_by_target=True),
        _edge("reports", "ledger", "call", refused_by_target=True),
        _edge("rogue", "ledger", "call", declared=False, seen=True),
        _edge("expenses", "expense.submitted", "publish", seen=True),
        _edge("ledger", "audit.trail", "publish", declared=False, seen=True),
        _edge("expense.submitted", "ledger", "subscribe", seen=True),
        _edge("expense.submitted", "mailer", "subscribe", seen=True),
        _edge("invoice.paid", "mailer", "subscribe"),
    ]
    assert graph["nodes"] == [
        {"name": "expenses", "kind": "app", "in_catalog": True},
        {"name": "ledger", "kind": "app", "in_catalog": True},
        {"name": "mailer", "kind": "app", "in_catalog": True},
        {"name": "reports", "kind": "app", "in_catalog": True},
        {"name": "rogue", "kind": "app", "in_catalog": False},
        {"name": "audit.trail", "kind": "topic", "in_catalog": False},
        {"name": "expense.submitted", "kind": "topic", "in_catalog": True},
        {"name": "invoice.paid", "kind": "topic", "in_catalog": True},
    ]


def test_a_call_to_an_app_outside_the_catalog_is_kept_unrefused() -> None:
    policy = mesh_policy(parse_manifest(manifest("a", "  consumes: [{service: gone}]\n")))
    graph = build_graph({"a": policy}, set())
    assert graph["edges"] == [_edge("a", "gone", "call")]
    assert graph["nodes"][1] == {"name": "gone", "kind": "app", "in_catalog": False}


@pytest.mark.parametrize(
    ("declared", "accepts", "refused"),
    [
        ({"paths": ["/**"], "methods": ["*"]}, None, False),
        ({"paths": ["/a/**"], "methods": ["GET"]}, [("*", ["/**"], ["*"])], False),
        ({"paths": ["/a/**"], "methods": ["GET"]}, [("b", ["/**"], ["*"])], True),
        ({"paths": ["/a/**"], "methods": ["GET"]}, [("a", ["/b/**"], ["*"])], True),
        ({"paths": ["/a/**"], "methods": ["GET"]}, [("a", ["/a/*/x"], ["*"])], False),
        ({"paths": ["/a/*"], "methods": ["GET"]}, [("a", ["/**"], ["POST"])], True),
        ({"paths": ["/a/*"], "methods": ["*"]}, [("a", ["/a/b"], ["POST"])], False),
        ({"paths": ["/a"], "methods": ["GET"]}, [], True),
    ],
)
def test_a_declared_call_is_refused_when_no_accepts_rule_admits_any_of_it(
    declared: dict[str, list[str]],
    accepts: list[tuple[str, list[str], list[str]]] | None,
    refused: bool,
) -> None:
    target = {
        "consumes": [],
        "accepts": None
        if accepts is None
        else [{"caller": c, "paths": p, "methods": m} for c, p, m in accepts],
        "publishes": [],
        "subscribes": [],
    }
    call = {"service": "t", **declared}
    assert is_refused("a", call, target) is refused  # type: ignore[arg-type]


SMALL: GraphDocument = {
    "nodes": [
        {"name": "billing", "kind": "app", "in_catalog": True},
        {"name": "ledger", "kind": "app", "in_catalog": True},
        {"name": "x", "kind": "app", "in_catalog": False},
        {"name": "paid", "kind": "topic", "in_catalog": True},
    ],
    "edges": [
        _edge("billing", "ledger", "call", seen=True),  # type: ignore[list-item]
        _edge("ledger", "billing", "call", refused_by_target=True),  # type: ignore[list-item]
        _edge("x", "ledger", "call", declared=False, seen=True),  # type: ignore[list-item]
        _edge("billing", "paid", "publish", seen=True),  # type: ignore[list-item]
        _edge("paid", "ledger", "subscribe"),  # type: ignore[list-item]
    ],
}


def test_mermaid_draws_used_edges_solid_and_unused_ones_dashed() -> None:
    assert render_mermaid(SMALL) == (
        "flowchart LR\n"
        '  a0["billing"]\n'
        '  a1["ledger"]\n'
        '  a2["x"]\n'
        '  t3(["paid"])\n'
        "  a0 --> a1\n"
        '  a1 -.->|"refused by target, never used"| a0\n'
        '  a2 -->|"undeclared"| a1\n'
        '  a0 -->|"publish"| t3\n'
        '  t3 -.->|"subscribe, never used"| a1\n'
        "  classDef outside stroke-dasharray: 3 3\n"
        "  class a2 outside\n"
        "  linkStyle 1 stroke:#d00,color:#d00\n"
        "  linkStyle 2 stroke:#d00,color:#d00\n"
    )


def test_dot_marks_the_same_edges() -> None:
    assert render_dot(SMALL) == (
        "digraph courtyard {\n"
        "  rankdir=LR;\n"
        '  node [shape=box, fontname="sans-serif"];\n'
        '  edge [fontname="sans-serif", fontsize=10];\n'
        '  a0 [label="billing"];\n'
        '  a1 [label="ledger"];\n'
        '  a2 [label="x", style=dashed];\n'
        '  t3 [label="paid", shape=ellipse];\n'
        "  a0 -> a1;\n"
        "  a1 -> a0 [style=dashed, color=red, fontcolor=red,"
        ' label="refused by target, never used"];\n'
        '  a2 -> a1 [color=red, fontcolor=red, label="undeclared"];\n'
        '  a0 -> t3 [label="publish"];\n'
        '  t3 -> a1 [style=dashed, label="subscribe, never used"];\n'
        "}\n"
    )


def test_labels_are_escaped_for_each_renderer() -> None:
    odd: GraphDocument = {
        "nodes": [{"name": 'a"b\\c', "kind": "app", "in_catalog": True}],
        "edges": [],
    }
    assert '["a#quot;b\\c"]' in render_mermaid(odd)
    assert 'label="a\\"b\\\\c"' in render_dot(odd)


def test_json_round_trips_through_the_cli_reader(apps: list[App]) -> None:
    graph = build_graph(policies_of(apps), {"expenses>ledger"})
    assert graph_from_document(json.loads(render(graph, "json"))) == graph
    bad: object
    for bad in (
        [],
        {"nodes": []},
        {"nodes": [{"kind": "x"}], "edges": []},
        {"nodes": [], "edges": [{}]},
    ):
        with pytest.raises(ValueError, match="not a"):
            graph_from_document(bad)


# the route ------------------------------------------------------------------------------------

READER = Principal(
    kind="user",
    id="u_0000000000000001",
    email="r@example.com",
    name="Reader",
    groups=(),
    roles=(),
    app_roles={},
    auth="session",
    session_id=None,
)


class _SignedIn(BaseHTTPMiddleware):
    """What the node's credentials guard does for a valid bearer token."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        if request.headers.get("authorization") == "Bearer reader":
            request.state.principal = READER
        return await call_next(request)


@pytest.fixture
async def api(catalog: Catalog) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.add_middleware(_SignedIn)
    app.include_router(graph_router(catalog.list, lambda: {"expenses>ledger"}))
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": "Bearer reader"}
    async with httpx.AsyncClient(transport=transport, base_url="http://n", headers=headers) as c:
        yield c


async def test_the_route_serves_each_format(api: httpx.AsyncClient, apps: list[App]) -> None:
    expected = build_graph(policies_of(apps), {"expenses>ledger"})
    document = await api.get("/api/v1/graph")
    assert document.status_code == 200
    assert document.json() == expected
    mermaid = await api.get("/api/v1/graph", params={"format": "mermaid"})
    assert mermaid.headers["content-type"] == "text/plain; charset=utf-8"
    assert mermaid.text == render_mermaid(expected)
    dot = await api.get("/api/v1/graph", params={"format": "dot"})
    assert dot.headers["content-type"] == "text/vnd.graphviz; charset=utf-8"
    assert dot.text == render_dot(expected)
    assert (await api.get("/api/v1/graph", params={"format": "png"})).status_code == 422


async def test_the_route_needs_a_signed_in_caller(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/v1/graph", headers={"Authorization": "Bearer nobody"})
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"


# the command ----------------------------------------------------------------------------------


@pytest.fixture
def node(apps: list[App]) -> Iterator[tuple[str, list[str]]]:
    """A loopback stand-in for the node's graph route; records each request's token."""
    tokens: list[str] = []
    body = json.dumps(build_graph(policies_of(apps), {"expenses>ledger"})).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            tokens.append(self.headers.get("Authorization", ""))
            ok = self.path == "/api/v1/graph?format=json"
            self.send_response(200 if ok else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body) if ok else 2))
            self.end_headers()
            self.wfile.write(body if ok else b"{}")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", tokens
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_courtyard_graph_prints_each_format(
    node: tuple[str, list[str]], apps: list[App], tmp_path: Path
) -> None:
    url, tokens = node
    (tmp_path / "admin.token").write_text("cy_admin\n")
    expected = build_graph(policies_of(apps), {"expenses>ledger"})
    cli = typer.Typer()
    cli.callback()(lambda: None)  # a group, as the courtyard command is
    register(cli)
    runner = CliRunner(env={"COURTYARD_TOKEN": None, "COURTYARD_URL": None})
    common = ["--url", url, "--data-dir", str(tmp_path)]
    result = runner.invoke(cli, ["graph", *common])
    assert result.exit_code == 0, result.output
    assert result.stdout == render_mermaid(expected)
    result = runner.invoke(cli, ["graph", "--format", "dot", *common])
    assert result.stdout == render_dot(expected)
    result = runner.invoke(cli, ["graph", "-f", "json", *common])
    assert json.loads(result.stdout) == expected
    assert tokens == ["Bearer cy_admin"] * 3


def test_courtyard_graph_without_a_node_is_one_line(tmp_path: Path) -> None:
    cli = typer.Typer()
    cli.callback()(lambda: None)
    register(cli)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    result = CliRunner().invoke(cli, ["graph", "--url", url, "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert f"no Courtyard node answers at {url}" in result.output
