"""``courtyard users|groups|roles|tokens|sessions|service-accounts``: the directory, from a shell.

Everything goes through the node's API. Passwords are read from stdin or a hidden prompt,
never from a flag (flags end up in shell history and ``ps``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from courtyard.cli._terminal import AsJson, DataDir, Url, call_api, fail, out, print_json

_OPTIONS: dict[str, Any] = {
    "no_args_is_help": True,
    "add_completion": False,
    "pretty_exceptions_enable": False,
}
users = typer.Typer(name="users", help="Manage people.", **_OPTIONS)
groups = typer.Typer(name="groups", help="Manage groups and their members.", **_OPTIONS)
roles = typer.Typer(name="roles", help="Grant and revoke roles.", **_OPTIONS)
tokens = typer.Typer(name="tokens", help="Personal access tokens and API keys.", **_OPTIONS)
sessions = typer.Typer(name="sessions", help="Browser sessions.", **_OPTIONS)
services = typer.Typer(name="service-accounts", help="Workload identities.", **_OPTIONS)

PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from standard input.")
]


def register(app: typer.Typer) -> None:
    """Add the directory's sub-commands to the ``courtyard`` app."""
    for sub in (users, groups, roles, tokens, sessions, services):
        app.add_typer(sub, name=sub.info.name)


_call = call_api


def _password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if not password:
        fail("the password is empty")
    return password


def _list(
    url: str | None,
    data_dir: Path,
    path: str,
    as_json: bool,
    columns: list[tuple[str, str]],
    **kwargs: Any,
) -> None:
    """GET a listing and print it as JSON or as a table."""
    listing = _call(url, data_dir, "GET", path, **kwargs)
    if as_json:
        print_json(listing)
        return
    _table(listing, columns)


def _table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> None:
    if not rows:
        out.print("Nothing to show.")
        return
    table = Table(box=None, header_style="bold")
    for title, _ in columns:
        table.add_column(title, overflow="fold")
    for row in rows:
        table.add_row(*(Text(_show(row.get(key))) for _, key in columns))
    out.print(table)


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(str(item) for item in value) or "-"
    return str(value)


def _emit(document: Any, as_json: bool, line: str) -> None:
    if as_json:
        print_json(document)
    else:
        out.print(Text(line))


# users
@users.command("create")
def users_create(
    email: str,
    name: Annotated[str, typer.Option(help="Display name.")] = "",
    role: Annotated[list[str] | None, typer.Option(help="Platform role (repeatable).")] = None,
    no_password: Annotated[
        bool, typer.Option("--no-password", help="Create without a password.")
    ] = False,
    password_stdin: PasswordStdin = False,
    url: Url = None,
    data_dir: DataDir = Path(".courtyard"),
    as_json: AsJson = False,
) -> None:
    """Create a user (password from --password-stdin or a hidden prompt)."""
    body: dict[str, Any] = {"email": email, "name": name, "roles": role or []}
    if not no_password:
        body["password"] = _password(password_stdin)
    user = _call(url, data_dir, "POST", "/api/v1/users", json=body)
    _emit(user, as_json, f"created user {user['email']} ({user['id']})")


@users.command("list")
def users_list(
    url: Url = None, data_dir: DataDir = Path(".courtyard"), as_json: AsJson = False
) -> None:
    """List users."""
    listing = _call(url, data_dir, "GET", "/api/v1/users")
    if as_json:
        print_json(listing)
        return
    columns = [("ID", "id"), ("EMAIL", "email"), ("NAME", "name"), ("STATUS", "status")]
    _table(listing, [*columns, ("TOTP", "totpEnabled")])


@users.command("show")
def users_show(
    ref: str, url: Url = None, data_dir: DataDir = Path(".courtyard"), as_json: AsJson = False
) -> None:
    """Show one user (id, e-mail or "me")."""
    user = _call(url, data_dir, "GET", f"/api/v1/users/{ref}")
    _emit(user, as_json, f"{user['id']} {user['email']} {user['name']} ({user['status']})")


@users.command("update")
def users_update(
    ref: str,
    name: Annotated[str | None, typer.Option(help="New display name.")] = None,
    status: Annotated[str | None, typer.Option(help="active or disabled.")] = None,
    url: Url = None,
    data_dir: DataDir = Path(".courtyard"),
    as_json: AsJson = False,
) -> None:
    """Rename, disable or enable a user."""
    body = {k: v for k, v in {"name": name, "status": status}.items() if v is not None}
    user = _call(url, data_dir, "PATCH", f"/api/v1/users/{ref}", json=body)
    _emit(user, as_json, f"updated user {user['email']} ({user['status']})")


@users.command("delete")
def users_delete(ref: str, url: Url = None, data_dir: DataDir = Path(".courtyard")) -> None:
    """Delete a user with their sessions and tokens."""
    _call(url, data_dir, "DELETE", f"/api/v1/users/{ref}")
    out.print(Text(f"deleted user {ref}"))


@users.command("password")
def users_password(
    ref: str,
    password_stdin: PasswordStdin = False,
    url: Url = None,
    data_dir: DataDir = Path(".courtyard"),
) -> None:
    """Set a user's password (their other sessions end)."""
    body = {"password": _password(password_stdin)}
    _call(url, data_dir, "PUT", f"/api/v1/users/{ref}/password", json=body)
    out.print(Text(f"password of {ref} changed"))


@users.command("totp-disable")
def users_totp_disable(ref: str, url: Url = None, data_dir: DataDir = Path(".courtyard")) -> None:
    """Turn off a user's second factor (e.g. a lost phone and no recovery codes)."""
    _call(url, data_dir, "DELETE", f"/api/v1/users/{ref}/totp")
    out.print(Text(f"two-factor authentication of {ref} turned off"))


# groups
@groups.command("create")
def groups_create(
    name: str,
    title: Annotated[str, typer.Option(help="Human-readable title.")] = "",
    url: Url = None,
    data_dir: DataDir = Path(".courtyard"),
    as_json: AsJson = False,
) -> None:
    """Create a group."""
    group = _call(url, data_dir, "POST", "/api/v1/groups", json={"name": name, "title": title})
    _emit(group, as_json, f"created group {group['name']}")


@groups.command("list")
def groups_list(
    url: Url = None, data_dir: DataDir = Path(".courtyard"), as_json: AsJson = False
) -> None:
    """List groups and their members."""
    _list(
        url,
        data_dir,
        "/api/v1/groups",
        as_json,
        [("NAME", "name"), ("TITLE", "title"), ("MEMBERS", "members")],
    )


@groups.command("delete")
def groups_delete(name: str, url: Url = None, data_dir: DataDir = Path(".courtyard")) -> None:
    """Delete a group and its role bindings."""
    _call(url, data_dir, "DELETE", f"/api/v1/groups/{name}")
    out.print(Text(f"deleted group {name}"))


@groups.command("add")
def groups_add(
    group: str, user: str, url: Url = None, data_dir: DataDir = Path(".courtyard")
) -> None:
    """Add a user (id or e-mail) to a group."""
    _call(url, data_dir, "PUT", f"/api/v1/groups/{group}/members/{user}")
    out.print(Text(f"added {user} to {group}"))


@groups.command("remove")
def groups_remove(
    group: str, user: str, url: Url = None, data_dir: DataDir = Path(".courtyard")
) -> None:
    """Remove a user from a group."""
    _call(url, data_dir, "DELETE", f"/api/v1/groups/{group}/members/{user}")
    out.print(Text(f"removed {user} from {group}"))


# roles
AppOption = Annotated[str | None, typer.Option(help="The app (omit for a platform role).")]


@roles.command("grant")
def roles_grant(
    role: str,
    subject: Annotated[str, typer.Argument(help="user:<id|email>, group:<name>, service:<name>")],
    app: AppOption = None,
    url: Url = None,
    data_dir: DataDir = Path(".courtyard"),
) -> None:
    """Grant a role."""
    body = {"role": role, "subject": subject, "app": app}
    binding = _call(url, data_dir, "POST", "/api/v1/roles", json=body)
    where = f" in {binding['app']}" if binding.get("app") else ""
    out.print(Text(f"granted {role} to {binding['subject']}{where}"))


@roles.command("revoke")
def roles_revoke(
    role: str,
    subject: str,
    app: AppOption = None,
    url: Url = None,
    data_dir: DataDir = Path(".courtyard"),
) -> None:
    """Revoke a role."""
    params = {k: v for k, v in {"role": role, "subject": subject, "app": app}.items() if v}
    _call(url, data_dir, "DELETE", "/api/v1/roles", params=params)
    out.print(Text(f"revoked {role} from {subject}"))


@roles.command("list")
def roles_list(
    subject: Annotated[str | None, typer.Option(help="Only this subject.")] = None,
    app: AppOption = None,
    url: Url = None,
    data_dir: DataDir = Path(".courtyard"),
    as_json: AsJson = False,
) -> None:
    """List role bindings."""
    params = {k: v for k, v in {"subject": subject, "app": app}.items() if v is not None}
    columns = [("ROLE", "role"), ("SUBJECT", "subject"), ("APP", "app")]
    _list(url, data_dir, "/api/v1/roles", as_json, columns, params=params)


# tokens
@tokens.command("create")
def tokens_create(
    name: str,
    user: Annotated[str, typer.Option(help='Owner (id, e-mail or "me").')] = "me",
    service: Annotated[str | None, typer.Option(help="Issue an API key for this account.")] = None,
    scope: Annotated[list[str] | None, typer.Option(help="Scope (repeatable).")] = None,
    expires_in_days: Annotated[
        float | None, typer.Option(help="Lifetime in days (default 90; 0 = never).")
    ] = 90,
    url: Url = None,
    data_dir: DataDir = Path(".courtyard"),
    as_json: AsJson = False,
) -> None:
    """Issue a token; it is printed once and cannot be shown again."""
    expires = None if not expires_in_days else expires_in_days * 86400
    body = {"name": name, "scopes": scope or [], "expiresIn": expires}
    path = (
        f"/api/v1/service-accounts/{service}/tokens" if service else f"/api/v1/users/{user}/tokens"
    )
    issued = _call(url, data_dir, "POST", path, json=body)
    if as_json:
        print_json(issued)
        return
    out.print(Text(f"token {issued['id']} for {issued['owner']} (shown once, keep it safe):"))
    sys.stdout.write(issued["token"] + "\n")


@tokens.command("list")
def tokens_list(
    user: Annotated[str, typer.Option(help='Owner (id, e-mail or "me").')] = "me",
    service: Annotated[str | None, typer.Option(help="A service account's keys.")] = None,
    url: Url = None,
    data_dir: DataDir = Path(".courtyard"),
    as_json: AsJson = False,
) -> None:
    """List tokens (never their secrets)."""
    path = (
        f"/api/v1/service-accounts/{service}/tokens" if service else f"/api/v1/users/{user}/tokens"
    )
    listing = _call(url, data_dir, "GET", path)
    if as_json:
        print_json(listing)
        return
    columns = [("ID", "id"), ("NAME", "name"), ("SCOPES", "scopes"), ("EXPIRES", "expiresAt")]
    _table(listing, [*columns, ("REVOKED", "revokedAt")])


@tokens.command("revoke")
def tokens_revoke(token_id: str, url: Url = None, data_dir: DataDir = Path(".courtyard")) -> None:
    """Revoke a token now."""
    _call(url, data_dir, "DELETE", f"/api/v1/tokens/{token_id}")
    out.print(Text(f"revoked token {token_id}"))


# sessions
@sessions.command("list")
def sessions_list(
    user: Annotated[str, typer.Option(help='Whose sessions (id, e-mail or "me").')] = "me",
    url: Url = None,
    data_dir: DataDir = Path(".courtyard"),
    as_json: AsJson = False,
) -> None:
    """List live sessions."""
    listing = _call(url, data_dir, "GET", f"/api/v1/users/{user}/sessions")
    if as_json:
        print_json(listing)
        return
    columns = [("ID", "id"), ("CLIENT", "client"), ("LAST SEEN", "lastSeen")]
    _table(listing, [*columns, ("METHODS", "methods"), ("USER AGENT", "userAgent")])


@sessions.command("revoke")
def sessions_revoke(
    session_id: str, url: Url = None, data_dir: DataDir = Path(".courtyard")
) -> None:
    """End a session now."""
    _call(url, data_dir, "DELETE", f"/api/v1/sessions/{session_id}")
    out.print(Text(f"ended session {session_id}"))


# service accounts
@services.command("create")
def services_create(
    name: str,
    title: Annotated[str, typer.Option(help="Human-readable title.")] = "",
    url: Url = None,
    data_dir: DataDir = Path(".courtyard"),
    as_json: AsJson = False,
) -> None:
    """Create a service account (then: courtyard tokens create --service NAME)."""
    body = {"name": name, "title": title}
    account = _call(url, data_dir, "POST", "/api/v1/service-accounts", json=body)
    _emit(account, as_json, f"created service account {account['name']}")


@services.command("list")
def services_list(
    url: Url = None, data_dir: DataDir = Path(".courtyard"), as_json: AsJson = False
) -> None:
    """List service accounts."""
    _list(
        url,
        data_dir,
        "/api/v1/service-accounts",
        as_json,
        [("NAME", "name"), ("TITLE", "title"), ("CREATED", "createdAt")],
    )


@services.command("delete")
def services_delete(name: str, url: Url = None, data_dir: DataDir = Path(".courtyard")) -> None:
    """Delete a service account and its API keys."""
    _call(url, data_dir, "DELETE", f"/api/v1/service-accounts/{name}")
    out.print(Text(f"deleted service account {name}"))
