"""Rich renderings of API documents for people (``--json`` prints the documents instead)."""

from __future__ import annotations

from typing import Any

from rich.console import RenderableType
from rich.table import Table

from courtyard.catalog import Manifest

_PHASE_STYLE = {
    "running": "green",
    "crash-loop": "red",
    "failed": "red",
    "degraded": "yellow",
    "rolling-out": "cyan",
    "starting": "cyan",
    "stopped": "dim",
}


def url_of(base: str, manifest: Manifest) -> str:
    """The first URL an app answers at, or a dash."""
    routes = manifest.spec.routes
    return f"{base}{routes[0].path}" if routes else "-"


def _phase(doc: dict[str, Any]) -> str:
    phase = str(doc.get("phase", "?"))
    style = _PHASE_STYLE.get(phase)
    return f"[{style}]{phase}[/{style}]" if style else phase


def apps_table(listing: list[dict[str, Any]]) -> RenderableType:
    """The fleet, one app a row; routes are paths under the node URL printed above it."""
    if not listing:
        return "No apps yet. Deploy one with `courtyard deploy PATH`."
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("NAME", "STAGE", "OWNER", "REV", "STATE", "READY", "RESTARTS"):
        table.add_column(column, no_wrap=True)
    table.add_column("ROUTE", overflow="fold")
    for doc in listing:
        routes = doc.get("routes") or []
        table.add_row(
            doc["name"],
            doc["stage"],
            doc["owner"],
            str(doc["revision"]),
            _phase(doc),
            f"{doc['readyReplicas']}/{doc['desiredReplicas']}",
            str(doc["restarts"]),
            routes[0] if routes else "-",
        )
    return table


def app_detail(doc: dict[str, Any], base: str) -> list[RenderableType]:
    routes = doc.get("routes") or []
    lines: list[RenderableType] = [
        f"[bold]{doc['name']}[/bold] — {doc['title']} ({doc['kind']}, {doc['stage']})",
        f"owner {doc['owner']} · business owner {doc['businessOwner']}",
        f"revision {doc['revision']} · desired {doc['desiredState']} · state {_phase(doc)}"
        f" · ready {doc['readyReplicas']}/{doc['desiredReplicas']} · restarts {doc['restarts']}",
    ]
    if doc.get("message"):
        lines.append(f"[yellow]{doc['message']}[/yellow]")
    rollout = doc.get("rollout")
    if rollout:
        lines.append(
            f"last rollout: revision {rollout['revision']} {rollout['state']} {rollout['message']}"
        )
    for route in routes:
        lines.append(f"url {base}{route}")
    instances = doc.get("instances") or []
    if instances:
        table = Table(box=None, header_style="bold")
        for column in ("INSTANCE", "REV", "PID", "PORT", "STATE", "RESTARTS", "LAST EXIT"):
            table.add_column(column, no_wrap=True)
        for inst in instances:
            table.add_row(
                inst["id"],
                str(inst["revision"]),
                str(inst["pid"] or "-"),
                str(inst["port"]),
                inst["state"],
                str(inst["restarts"]),
                "-" if inst["lastExit"] is None else str(inst["lastExit"]),
            )
        lines.append(table)
    return lines
