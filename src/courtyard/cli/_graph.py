"""``courtyard graph``: the fleet's dependency graph (calls and events), marked with what the
mesh has seen used, as Mermaid, Graphviz dot or JSON on stdout (pipe it to ``dot -Tsvg``).

The node builds the graph (``GET /api/v1/graph``); the CLI renders it with the same functions
the API uses, so a text format never depends on what the node's version renders.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from courtyard.cli._client import ApiClient, CliError, resolve_target
from courtyard.cli._terminal import DataDir, Url, fail
from courtyard.mesh import graph_from_document, render

__all__ = ["graph_command", "register"]

Format = Literal["mermaid", "dot", "json"]


def register(app: typer.Typer) -> None:
    """Add ``courtyard graph`` to ``app``."""
    app.command("graph")(graph_command)


def graph_command(
    format: Annotated[
        Format, typer.Option("--format", "-f", help="mermaid, dot (Graphviz) or json.")
    ] = "mermaid",
    url: Url = None,
    data_dir: DataDir = Path(".courtyard"),
) -> None:
    """Print who calls whom and who publishes and receives each topic.

    Solid edges were used since the node started, dashed ones never were; red ones are
    refused by the target's accepts rules, or were used without being declared.
    """
    api = ApiClient(resolve_target(url, data_dir))
    try:
        document = api.request("GET", "/api/v1/graph", params={"format": "json"})
    except CliError as exc:
        fail(str(exc), exc.details)
    finally:
        api.close()
    try:
        graph = graph_from_document(document)
    except ValueError as exc:
        fail(f"the node answered something else than a graph: {exc}")
    sys.stdout.write(render(graph, format))
