"""``courtyard traces`` and ``courtyard trace`` (the fleet's recent traces) and the fleet
health table of ``courtyard status``, read from the node's API."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from courtyard.cli._terminal import AsJson, DataDir, Url, call_api, out, print_json

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add ``traces`` and ``trace`` to ``app``."""
    app.command("traces")(traces)
    app.command("trace")(trace)


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%H:%M:%S")


def traces(
    app: Annotated[str, typer.Argument(help="Traces this app took part in.")],
    slow: Annotated[bool, typer.Option("--slow", help="Slowest first.")] = False,
    errors: Annotated[bool, typer.Option("--errors", help="Only traces with an error.")] = False,
    limit: Annotated[int, typer.Option(help="At most this many traces.")] = 20,
    url: Url = None,
    data_dir: DataDir = Path(".courtyard"),
    as_json: AsJson = False,
) -> None:
    """Recent traces of an app (newest first), from the node's built-in trace store."""
    params = {"app": app, "slow": slow, "errors": errors, "limit": limit}
    document = call_api(url, data_dir, "GET", "/api/v1/traces", params=params)
    if as_json:
        print_json(document)
        return
    if not document:
        out.print(f"No recent traces of {app}.")
        return
    table = Table(box=None, header_style="bold")
    table.add_column("TRACE", no_wrap=True, min_width=32)
    for column in ("AT", "ROOT", "SPANS", "DURATION", "SERVICES", ""):
        table.add_column(column)
    for row in document:
        table.add_row(
            row["traceId"],
            _when(row["start"]),
            Text(row["root"]),
            str(row["spans"]),
            f"{row['durationMs']:.1f} ms",
            Text(", ".join(row["services"])),
            Text("error", style="red") if row["error"] else "",
        )
    out.print(table)


def trace(
    trace_id: Annotated[str, typer.Argument(help="A trace id from `courtyard traces`.")],
    url: Url = None,
    data_dir: DataDir = Path(".courtyard"),
    as_json: AsJson = False,
) -> None:
    """Every span of one trace, as a tree."""
    document = call_api(url, data_dir, "GET", f"/api/v1/traces/{trace_id}")
    if as_json:
        print_json(document)
        return
    spans: list[dict[str, Any]] = document["spans"]
    ids = {span["span_id"] for span in spans}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for span in spans:
        parent = span["parent_id"] if span["parent_id"] in ids else None
        children.setdefault(parent, []).append(span)
    root = Tree(f"trace {trace_id}")

    def grow(node: Tree, parent: str | None) -> None:
        for span in sorted(children.get(parent, []), key=lambda s: s["start"]):
            label = Text(f"{span['service']}: {span['name']}  ")
            label.append(f"{span['duration'] * 1000:.1f} ms", style="cyan")
            if span["status"]:
                label.append(f"  {span['status']}", style="red" if span["error"] else "green")
            grow(node.add(label), span["span_id"])

    grow(root, None)
    out.print(root)


def health_table(document: dict[str, Any]) -> Table:
    """Every app's stage, instances, request rate, error ratio, p99 and error budget left."""
    table = Table(box=None, header_style="bold")
    longest = max((len(row["name"]) for row in document["apps"]), default=3)
    table.add_column("APP", no_wrap=True, min_width=longest)  # names are never cut
    for column in ("STAGE", "PHASE", "READY", "REQ/S", "ERRORS", "P99", "BUDGET", "ALERTS"):
        table.add_column(column)
    for row in document["apps"]:
        errors = "-" if row["errorRatio"] is None else f"{row['errorRatio'] * 100:.2f}%"
        p99 = "-" if row["p99Ms"] is None else f"{row['p99Ms']:.1f} ms"
        left = row["budgetRemaining"]
        budget = (
            Text("-")
            if left is None
            else Text(f"{left * 100:.1f}%", style="red" if left < 0.25 else "green")
        )
        alerts = Text(", ".join(row["alerts"]), style="red") if row["alerts"] else Text("")
        table.add_row(
            row["name"],
            str(row["stage"]),
            str(row["phase"]),
            f"{row['ready']}/{row['desired']}",
            f"{row['requestRate']:.2f}",
            errors,
            p99,
            budget,
            alerts,
        )
    return table
