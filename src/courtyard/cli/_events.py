"""``courtyard events``: see the deliveries that gave up and send them again.

Both commands go through the node's admin API (``/api/v1/events``), so the caller is checked
for a platform admin and a redrive is audited there.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from courtyard.cli._terminal import AsJson, DataDir, Url, call_api, fail, out, print_json

__all__ = ["events", "register"]

events = typer.Typer(
    name="events",
    help="Dead event deliveries: list them, deliver them again.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def register(app: typer.Typer) -> None:
    """Add the ``events`` command group to ``app``."""
    app.add_typer(events, name="events")


_call = call_api


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


@events.command("dead")
def dead_command(
    topic: Annotated[str | None, typer.Option("--topic", help="Only this topic.")] = None,
    url: Url = None,
    data_dir: DataDir = Path(".courtyard"),
    as_json: AsJson = False,
) -> None:
    """List dead deliveries (they failed every attempt), oldest event first."""
    params = {"topic": topic} if topic else {}
    document = _call(url, data_dir, "GET", "/api/v1/events/dead", params=params)
    if as_json:
        print_json(document)
        return
    if not document:
        out.print("No dead deliveries.")
        return
    table = Table(box=None, header_style="bold")
    for column in ("EVENT", "TOPIC", "FROM", "TO", "ATTEMPTS", "LAST TRY (UTC)", "LAST ERROR"):
        table.add_column(column, overflow="fold")
    for item in document:
        table.add_row(
            Text(item["id"]),
            Text(item["topic"]),
            Text(item["publisher"]),
            Text(f"{item['subscriber']}{item['handler']}"),
            str(item["attempts"]),
            _when(item.get("lastAttemptAt")),
            Text(item.get("lastError") or "-"),
        )
    out.print(table)
    out.print(Text("Deliver them again with `courtyard events redrive <event id>...` or --all."))


@events.command("redrive")
def redrive_command(
    ids: Annotated[list[str] | None, typer.Argument(help="Event ids to deliver again.")] = None,
    everything: Annotated[
        bool, typer.Option("--all", help="Every dead delivery of every event.")
    ] = False,
    url: Url = None,
    data_dir: DataDir = Path(".courtyard"),
    as_json: AsJson = False,
) -> None:
    """Deliver dead events again, with a fresh count of attempts."""
    if everything == bool(ids):
        fail("give event ids or --all (not both)")
    body: dict[str, Any] = {"all": True} if everything else {"ids": ids}
    document = _call(url, data_dir, "POST", "/api/v1/events/redrive", json=body)
    if as_json:
        print_json(document)
        return
    count = int(document["redriven"])
    if count == 0:
        out.print("No dead delivery matched: nothing to redrive.")
        return
    out.print(Text(f"Redrove {count} {'delivery' if count == 1 else 'deliveries'}."))
