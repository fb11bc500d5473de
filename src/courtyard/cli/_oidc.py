"""``courtyard clients`` and ``courtyard keys``: OAuth clients and the signing key ring.

Both go through the node's admin API (``/api/v1/clients``, ``/api/v1/keys``), so every change
is checked for a platform admin and audited there.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from courtyard.cli._terminal import AsJson, DataDir, Url, call_api, err, out, print_json

__all__ = ["clients", "keys", "register"]

clients = typer.Typer(
    name="clients",
    help="Register and manage OAuth/OpenID Connect clients.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
keys = typer.Typer(
    name="keys",
    help="List and rotate the token signing keys.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def register(app: typer.Typer) -> None:
    """Add the ``clients`` and ``keys`` command groups to ``app``."""
    app.add_typer(clients, name="clients")
    app.add_typer(keys, name="keys")


_call = call_api


def _show_client(document: dict[str, Any]) -> None:
    table = Table(box=None, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("client id", document["clientId"]),
        ("app", document["app"]),
        ("name", document["name"]),
        ("type", "public" if document["public"] else "confidential"),
        ("redirect URIs", "\n".join(document["redirectUris"]) or "-"),
        ("logout URIs", "\n".join(document["postLogoutRedirectUris"]) or "-"),
        ("grant types", " ".join(document["grantTypes"])),
        ("scopes", " ".join(document["scopes"])),
        ("audience", " ".join(document["audience"])),
        ("ID token alg", document["idTokenAlg"]),
    ]
    for name, value in rows:
        table.add_row(name, Text(str(value)))
    out.print(table)


def _show_secret(document: dict[str, Any]) -> None:
    secret = document.get("clientSecret")
    if secret is None:
        return
    out.print(Text.assemble(("client secret ", "bold"), secret))
    err.print("Store the secret now: it is shown only this once.")


@clients.command("create")
def create_command(
    app: Annotated[str, typer.Argument(help="The app the client belongs to.")],
    name: Annotated[str, typer.Option(help="A name people recognise.")],
    redirect_uri: Annotated[
        list[str] | None, typer.Option("--redirect-uri", help="Exact redirect URI (repeat).")
    ] = None,
    post_logout_redirect_uri: Annotated[
        list[str] | None,
        typer.Option("--post-logout-redirect-uri", help="Exact URI after sign-out (repeat)."),
    ] = None,
    public: Annotated[
        bool, typer.Option("--public", help="A client that cannot keep a secret (SPA, CLI).")
    ] = False,
    grant_type: Annotated[
        list[str] | None,
        typer.Option("--grant-type", help="authorization_code, refresh_token, client_credentials."),
    ] = None,
    scope: Annotated[
        list[str] | None, typer.Option("--scope", help="Allowed scope (repeat).")
    ] = None,
    audience: Annotated[
        list[str] | None, typer.Option("--audience", help="Access token audience (repeat).")
    ] = None,
    id_token_alg: Annotated[str, typer.Option(help="ES256 or RS256.")] = "ES256",  # noqa: S107
    url: Url = None,
    data_dir: DataDir = Path(".courtyard"),
    as_json: AsJson = False,
) -> None:
    """Register a client; prints its secret once (confidential clients)."""
    body = {
        "app": app,
        "name": name,
        "public": public,
        "redirectUris": redirect_uri or [],
        "postLogoutRedirectUris": post_logout_redirect_uri or [],
        "grantTypes": grant_type or ["authorization_code", "refresh_token"],
        "scopes": scope or ["openid", "profile", "email"],
        "audience": audience or ["courtyard"],
        "idTokenAlg": id_token_alg,
    }
    document = _call(url, data_dir, "POST", "/api/v1/clients", json=body)
    if as_json:
        print_json(document)
        return
    _show_client(document)
    _show_secret(document)


@clients.command("list")
def list_command(
    url: Url = None, data_dir: DataDir = Path(".courtyard"), as_json: AsJson = False
) -> None:
    """List the registered clients."""
    document = _call(url, data_dir, "GET", "/api/v1/clients")
    if as_json:
        print_json(document)
        return
    if not document["clients"]:
        out.print("No OAuth clients yet: add one with `courtyard clients create`.")
        return
    table = Table(box=None, header_style="bold")
    for column in ("CLIENT ID", "APP", "NAME", "TYPE", "GRANTS"):
        table.add_column(column)
    for client in document["clients"]:
        table.add_row(
            Text(client["clientId"]),
            Text(client["app"]),
            Text(client["name"]),
            "public" if client["public"] else "confidential",
            Text(" ".join(client["grantTypes"])),
        )
    out.print(table)


@clients.command("show")
def show_command(
    client_id: str, url: Url = None, data_dir: DataDir = Path(".courtyard"), as_json: AsJson = False
) -> None:
    """Show one client."""
    document = _call(url, data_dir, "GET", f"/api/v1/clients/{client_id}")
    if as_json:
        print_json(document)
        return
    _show_client(document)


@clients.command("delete")
def delete_command(client_id: str, url: Url = None, data_dir: DataDir = Path(".courtyard")) -> None:
    """Delete a client and revoke every token it holds."""
    _call(url, data_dir, "DELETE", f"/api/v1/clients/{client_id}")
    out.print(Text(f"Deleted client {client_id}; its refresh and access tokens are revoked."))


@clients.command("rotate-secret")
def rotate_secret_command(
    client_id: str, url: Url = None, data_dir: DataDir = Path(".courtyard"), as_json: AsJson = False
) -> None:
    """Give a confidential client a new secret; the old one stops working now."""
    document = _call(url, data_dir, "POST", f"/api/v1/clients/{client_id}/secret")
    if as_json:
        print_json(document)
        return
    _show_secret(document)


@keys.command("list")
def keys_list_command(
    url: Url = None, data_dir: DataDir = Path(".courtyard"), as_json: AsJson = False
) -> None:
    """List the signing key generations (next, active, retired)."""
    document = _call(url, data_dir, "GET", "/api/v1/keys")
    if as_json:
        print_json(document)
        return
    table = Table(box=None, header_style="bold")
    for column in ("ID", "STATE", "ES256 KID", "RS256 KID", "LEAVES JWKS"):
        table.add_column(column, overflow="fold")
    for key in document["keys"]:
        remove_at = key.get("removeAt")
        table.add_row(
            Text(key["id"]),
            key["state"],
            Text(key["kids"][0]),
            Text(key["kids"][1]),
            "-" if remove_at is None else _utc(remove_at),
        )
    out.print(table)


def _utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@keys.command("rotate")
def keys_rotate_command(
    url: Url = None, data_dir: DataDir = Path(".courtyard"), as_json: AsJson = False
) -> None:
    """Publish a new key generation; it signs once verifiers have had time to fetch it."""
    document = _call(url, data_dir, "POST", "/api/v1/keys/rotate")
    if as_json:
        print_json(document)
        return
    delay = float(document.get("propagationDelay", 0))
    out.print(Text(f"New signing keys {document['id']} are published in the JWKS now."))
    out.print(
        Text(
            f"They start signing after the propagation delay ({delay:.0f} s); "
            "the current keys stay published until every token they signed has expired."
        )
    )
