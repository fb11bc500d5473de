"""``courtyard slo APP``: an app's SLOs — objective, SLI, error budget left, burn rates — or
the SLOs exported as OpenSLO, a Sloth spec or Prometheus rules (YAML) for cluster use.

Reads ``/api/v1/apps/{name}/slos`` (any signed-in caller may).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.table import Table
from rich.text import Text

from courtyard.cli._terminal import AsJson, DataDir, Url, call_api, fail, out, print_json

__all__ = ["register", "slo"]

FORMATS = ("openslo", "sloth", "prometheus")
BURN_COLUMNS = ("1h", "6h", "1d", "3d")  # the long windows of the alert rules


def register(app: typer.Typer) -> None:
    """Add ``slo`` to ``app``."""
    app.command("slo")(slo)


def slo(
    app: Annotated[str, typer.Argument(help="The app whose SLOs to show.")],
    export: Annotated[
        str | None,
        typer.Option(
            "--export",
            help="Print the SLOs as openslo, sloth or prometheus (rules), in YAML.",
            metavar="FORMAT",
        ),
    ] = None,
    url: Url = None,
    data_dir: DataDir = Path(".courtyard"),
    as_json: AsJson = False,
) -> None:
    """An app's SLOs: objective, window, SLI, error budget left and burn rates."""
    if export is not None:
        if export not in FORMATS:
            fail(f"--export must be openslo, sloth or prometheus, not {export!r}")
        document = call_api(
            url,
            data_dir,
            "GET",
            f"/api/v1/apps/{app}/slos/export",
            params={"format": export},
            headers={"Accept": "application/json"},
        )
        if as_json:
            print_json(document)
        elif isinstance(document, list):
            out.print(yaml.safe_dump_all(document, sort_keys=False), end="", highlight=False)
        else:
            out.print(yaml.safe_dump(document, sort_keys=False), end="", highlight=False)
        return
    document = call_api(url, data_dir, "GET", f"/api/v1/apps/{app}/slos")
    if as_json:
        print_json(document)
        return
    if not document:
        out.print(f"{app} declares no SLOs (spec.slos in its courtyard.yaml).")
        return
    out.print(slo_table(document))


def _percent(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value * 100:.{digits}f}%"


def slo_table(document: list[dict[str, Any]]) -> Table:
    """The SLO status rows as a table (budget left red when under a quarter, burn rates red
    at or over 1x: faster than the budget allows)."""
    table = Table(box=None, header_style="bold")
    table.add_column("SLO", no_wrap=True)  # a name is never cut
    for column in ("OBJECTIVE", "WINDOW", "SLI", "BUDGET LEFT", "EVENTS"):
        table.add_column(column)
    for window in BURN_COLUMNS:
        table.add_column(f"BURN {window}", justify="right")
    for row in document:
        name = row["name"]
        if row.get("threshold") is not None:
            name += f" (<= {row['threshold'] * 1000:g} ms)"
        left = row["budgetRemaining"]
        style = "red" if left < 0.25 else "yellow" if left < 0.5 else "green"
        burns = [
            Text(f"{rate:.2f}x", style="red" if rate >= 1 else "")
            for rate in (row["burnRates"].get(w, 0.0) for w in BURN_COLUMNS)
        ]
        table.add_row(
            name,
            f"{row['objective']:g}%",
            row["window"],
            _percent(row["sli"], 3),
            Text(f"{left * 100:.1f}%", style=style),
            f"{row['bad']}/{row['total']} bad",
            *burns,
        )
    return table
