"""What every command shares: its common options and how it speaks to the terminal.

Messages go through :class:`rich.text.Text`, never markup, so a name or an error text with
brackets in it is printed as it is.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.text import Text

from courtyard.cli._client import ApiClient, CliError, resolve_target

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

DataDir = Annotated[
    Path,
    typer.Option("--data-dir", envvar="COURTYARD_DATA_DIR", help="The node's data directory."),
]
Url = Annotated[
    str | None,
    typer.Option(
        "--url", envvar="COURTYARD_URL", help="The node's URL (default: the running node's)."
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def fail(message: str, details: list[str] | None = None) -> NoReturn:
    """One readable line on stderr (and indented details), then exit code 1."""
    err.print(Text.assemble(("error:", "red"), " ", message), soft_wrap=True)
    for line in details or []:
        err.print(Text(f"  {line}"), soft_wrap=True)
    raise typer.Exit(1)


def print_json(document: Any) -> None:
    """A document for scripts on stdout."""
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=True) + "\n")


def call_api(url: str | None, data_dir: Path, method: str, path: str, **kwargs: Any) -> Any:
    """One call to the node's API; any failure is one readable line and exit 1."""
    api = ApiClient(resolve_target(url, data_dir))
    try:
        return api.request(method, path, **kwargs)
    except CliError as exc:
        fail(str(exc), exc.details)
    finally:
        api.close()
