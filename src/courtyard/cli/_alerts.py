"""``courtyard alerts`` and ``courtyard silence``: see which SLO alerts fire, and mute an app's
alerts for a while.

Both go through the node's API (``/api/v1/alerts``, ``/api/v1/silences``); creating and ending
a silence needs a platform admin and is audited there.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote

import typer
from rich.table import Table
from rich.text import Text

from courtyard.cli._terminal import AsJson, DataDir, Url, call_api, fail, out, print_json

__all__ = ["register", "silence"]

silence = typer.Typer(
    name="silence",
    help="Silences: mute an app's alerts (no notification, no remediation) for a while.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_call = call_api


def register(app: typer.Typer) -> None:
    """Add ``alerts`` and the ``silence`` command group to ``app``."""
    app.command("alerts")(alerts_command)
    app.add_typer(silence, name="silence")


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _ago(seconds: float) -> str:
    """ "3m", "2h", "4d" since ``seconds``."""
    elapsed = max(0.0, time.time() - seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if elapsed >= size:
            return f"{int(elapsed // size)}{unit}"
    return f"{int(elapsed)}s"


def _burn(burn: dict[str, Any] | None) -> str:
    if not burn:
        return "-"
    return (
        f"{burn['longRate']:g}x/{burn['long']} {burn['shortRate']:g}x/{burn['short']} "
        f"(≥{burn['factor']:g}x)"
    )


def alerts_command(
    everything: Annotated[
        bool, typer.Option("--all", help="Recently resolved alerts as well.")
    ] = False,
    url: Url = None,
    data_dir: DataDir = Path(".courtyard"),
    as_json: AsJson = False,
) -> None:
    """List firing SLO alerts (oldest first), then resolved ones with --all."""
    params = {"all": "true"} if everything else {}
    document = _call(url, data_dir, "GET", "/api/v1/alerts", params=params)
    if as_json:
        print_json(document)
        return
    if not document:
        out.print("No alerts." if everything else "No alert is firing.")
        return
    table = Table(box=None, header_style="bold")
    for column in ("APP", "SLO", "SEVERITY", "STATE", "SINCE", "BURN"):
        table.add_column(column, overflow="fold")
    for alert in document:
        state = alert["state"] + (" (silenced)" if alert.get("silenced") else "")
        style = "red" if alert["state"] == "firing" and not alert.get("silenced") else ""
        since = alert["startedAt"] if alert["state"] == "firing" else alert.get("resolvedAt")
        table.add_row(
            Text(alert["app"]),
            Text(alert["slo"]),
            Text(alert["severity"]),
            Text(state, style=style),
            f"{_when(since)} ({_ago(since)} ago)" if since is not None else "-",
            Text(_burn(alert.get("burn"))),
        )
    out.print(table)


@silence.command("create")
def create_command(
    app: Annotated[str, typer.Argument(help="The app whose alerts to silence.")],
    duration: Annotated[
        str, typer.Option("--for", help='How long: "30m", "2h", "1d" (at most 90 days).')
    ],
    comment: Annotated[str, typer.Option("--comment", help="Why (kept in the audit trail).")],
    slo: Annotated[str | None, typer.Option("--slo", help="Only this SLO's alerts.")] = None,
    severity: Annotated[
        Literal["page", "ticket"] | None,
        typer.Option("--severity", help="Only alerts of this severity."),
    ] = None,
    url: Url = None,
    data_dir: DataDir = Path(".courtyard"),
    as_json: AsJson = False,
) -> None:
    """Silence APP's alerts: they still fire and are audited, but nobody is notified and no
    remediation runs until the silence ends."""
    if not comment.strip():
        fail("--comment must say why the alerts are silenced")
    body: dict[str, Any] = {"app": app, "duration": duration, "comment": comment}
    if slo:
        body["slo"] = slo
    if severity:
        body["severity"] = severity
    document = _call(url, data_dir, "POST", "/api/v1/silences", json=body)
    if as_json:
        print_json(document)
        return
    out.print(
        Text(
            f"Silenced {_scope(document)} until {_when(document['endsAt'])} UTC "
            f"(id {document['id']})."
        )
    )


def _scope(document: dict[str, Any]) -> str:
    scope = str(document["app"])
    if document.get("slo"):
        scope += f"/{document['slo']}"
    if document.get("severity"):
        scope += f" ({document['severity']})"
    return scope


@silence.command("list")
def list_command(
    url: Url = None,
    data_dir: DataDir = Path(".courtyard"),
    as_json: AsJson = False,
) -> None:
    """List silences in force."""
    document = _call(url, data_dir, "GET", "/api/v1/silences")
    if as_json:
        print_json(document)
        return
    if not document:
        out.print("No silence is in force.")
        return
    table = Table(box=None, header_style="bold")
    for column in ("ID", "APP", "SLO", "SEVERITY", "UNTIL (UTC)", "BY", "COMMENT"):
        table.add_column(column, overflow="fold")
    for item in document:
        table.add_row(
            Text(item["id"]),
            Text(item["app"]),
            Text(item.get("slo") or "*"),
            Text(item.get("severity") or "*"),
            _when(item["endsAt"]),
            Text(item.get("createdBy") or "-"),
            Text(item.get("comment") or ""),
        )
    out.print(table)


@silence.command("expire")
def expire_command(
    silence_id: Annotated[str, typer.Argument(metavar="ID", help="The silence to end.")],
    url: Url = None,
    data_dir: DataDir = Path(".courtyard"),
) -> None:
    """End a silence now."""
    _call(url, data_dir, "DELETE", f"/api/v1/silences/{quote(silence_id, safe='')}")
    out.print(Text(f"Silence {silence_id} ended."))
