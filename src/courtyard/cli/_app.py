"""Every ``courtyard`` subcommand. State changes go through the node's API (and so, later, IAM
and audit); only ``init``, ``up`` and ``schema`` work without a running node."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from courtyard import __version__
from courtyard.catalog import ManifestInvalid, make_bundle, manifest_json_schema, parse_manifest
from courtyard.cli._alerts import register as register_alerts
from courtyard.cli._audit import audit
from courtyard.cli._client import ApiClient, CliError, resolve_target
from courtyard.cli._events import register as register_events
from courtyard.cli._graph import register as register_graph
from courtyard.cli._iam import register as register_iam
from courtyard.cli._observe import health_table
from courtyard.cli._observe import register as register_observe
from courtyard.cli._oidc import register as register_oidc
from courtyard.cli._render import app_detail, apps_table, url_of
from courtyard.cli._slo import register as register_slo
from courtyard.cli._terminal import AsJson, DataDir, Url, err, fail, out, print_json
from courtyard.core import CourtyardError
from courtyard.node import Node, load_config
from courtyard.transport import structured_logs

app = typer.Typer(
    name="courtyard",
    help="Run a fleet of small apps as one system.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(audit, name="audit")
register_iam(app)
register_oidc(app)
register_graph(app)
register_events(app)
register_observe(app)
register_alerts(app)
register_slo(app)


def client(url: str | None, data_dir: Path) -> ApiClient:
    return ApiClient(resolve_target(url, data_dir))


def call(api: ApiClient, method: str, path: str, **kwargs: Any) -> Any:
    try:
        return api.request(method, path, **kwargs)
    except CliError as exc:
        fail(str(exc), exc.details)


@app.command()
def version() -> None:
    """Print Courtyard's version."""
    out.print(__version__)


@app.command()
def init(
    data_dir: DataDir = Path(".courtyard"),
    admin_email: Annotated[
        str | None, typer.Option(help="The first platform admin's email.")
    ] = None,
) -> None:
    """Create the data directory, its database, the admin token and the first platform admin.

    The admin's password comes from COURTYARD_ADMIN_PASSWORD, or is generated and printed once.
    """
    import os  # noqa: PLC0415

    from courtyard.node import init_node  # noqa: PLC0415 - only init needs it

    flags: dict[str, Any] = {"data_dir": data_dir, "admin_email": admin_email}
    try:
        config = load_config(flags, os.environ)
        email, generated = asyncio.run(
            init_node(config, os.environ.get("COURTYARD_ADMIN_PASSWORD") or None)
        )
    except (CourtyardError, OSError) as exc:
        fail(str(exc))
    out.print(f"Initialized {config.data_dir.resolve()}")
    if generated is not None:
        out.print(
            f"Platform admin {email}, password [bold]{generated}[/bold] (shown once)",
            highlight=False,
        )
    else:
        out.print(f"Platform admin {email}", highlight=False)


@app.command()
def up(
    data_dir: DataDir = Path(".courtyard"),
    demo: Annotated[bool, typer.Option("--demo", help="Deploy the apps in ./examples.")] = False,
    demo_dir: Annotated[Path, typer.Option(help="Where the demo apps are.")] = Path("examples"),
    workers: Annotated[int | None, typer.Option(help="Gateway worker processes.")] = None,
    port: Annotated[int | None, typer.Option(help="Gateway port.")] = None,
    host: Annotated[str | None, typer.Option(help="Gateway address.")] = None,
    admin_port: Annotated[int | None, typer.Option(help="Admin (metrics) port.")] = None,
    config_file: Annotated[Path, typer.Option("--config", help="Settings file.")] = Path(
        "courtyard.toml"
    ),
    tls_cert: Annotated[
        Path | None, typer.Option(help="PEM certificate: the gateway serves HTTPS with it.")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key of --tls-cert.")] = None,
    tls_self_signed: Annotated[
        bool | None,
        typer.Option(
            "--tls-self-signed/--no-tls-self-signed",
            help="Without --tls-cert: serve HTTPS with a generated local development certificate.",
        ),
    ] = None,
    login_max_delay: Annotated[
        float | None,
        typer.Option(help="Cap (seconds) of the growing delay after failed sign-ins."),
    ] = None,
) -> None:
    """Start a node: control plane, runtime and gateway on one port."""
    import os  # noqa: PLC0415

    flags = {
        "data_dir": data_dir,
        "workers": workers,
        "port": port,
        "host": host,
        "admin_port": admin_port,
        "tls_cert": tls_cert,
        "tls_key": tls_key,
        "tls_self_signed": tls_self_signed,
        "login_max_delay": login_max_delay,
    }
    try:
        config = load_config(flags, os.environ, config_file)
    except CourtyardError as exc:
        fail(str(exc))
    folders: list[Path] = []
    if demo:
        if not demo_dir.is_dir():
            fail(f"no demo apps: {demo_dir} is not a folder (run from the repository root)")
        folders = sorted(p.parent for p in demo_dir.glob("*/courtyard.yaml"))
    node = Node(config)

    def ready(node: Node) -> None:
        out.print(f"[bold]Courtyard {__version__}[/bold] serving at [cyan]{node.url}[/cyan]")
        if node.generated_admin is not None:
            email, password = node.generated_admin
            out.print(
                f"  admin    {email}  password [bold]{password}[/bold]  (shown once; "
                "set COURTYARD_ADMIN_PASSWORD to choose it)",
                highlight=False,
            )
        out.print(f"  API      {node.url}/api/v1/", soft_wrap=True)
        out.print(f"  OpenAPI  {node.url}/api/v1/openapi.json", soft_wrap=True)
        out.print(f"  metrics  {node.admin_url}/metrics")
        out.print(f"  data     {config.data_dir.resolve()}")
        if folders:
            out.print(f"Deploying {len(folders)} demo apps…")
        else:
            out.print("Press Ctrl+C to stop.")

    def demo_done(results: list[tuple[Path, Any]]) -> None:
        for folder, result in results:
            if isinstance(result, Exception):
                err.print(f"[red]✗[/red] {folder.name}: {result}", highlight=False)
                continue
            registration = result.registration
            rollout = node.lifecycle.rollout_of(registration.app.name) if node.lifecycle else None
            state = rollout.state if rollout is not None else "registered"
            mark = "[green]✓[/green]" if state == "succeeded" else "[yellow]![/yellow]"
            out.print(
                f"{mark} {registration.app.name:<16} {url_of(node.url, registration.app.manifest)}"
                f"  ({state}{': ' + rollout.message if rollout and state == 'failed' else ''})",
                highlight=False,
            )
        out.print("Press Ctrl+C to stop.")

    level = os.environ.get("COURTYARD_LOG_LEVEL", "INFO")
    try:
        with structured_logs("control-plane", level=level):
            asyncio.run(
                node.run(
                    admin_password=os.environ.get("COURTYARD_ADMIN_PASSWORD") or None,
                    demo=folders,
                    on_ready=ready,
                    on_demo=demo_done,
                )
            )
    except CourtyardError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        pass


@app.command()
def deploy(
    path: Annotated[Path, typer.Argument(help="The app folder (with courtyard.yaml).")],
    url: Url = None,
    data_dir: DataDir = Path(".courtyard"),
    wait: Annotated[bool, typer.Option(help="Wait until the new revision serves.")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the rollout.")] = 120.0,
    as_json: AsJson = False,
) -> None:
    """Bundle an app folder, upload it, and follow the rollout until it serves."""
    manifest_path = path / "courtyard.yaml"
    if not manifest_path.is_file():
        fail(f"{manifest_path}: no such file (an app folder holds its courtyard.yaml)")
    try:
        parse_manifest(manifest_path.read_bytes(), source=str(manifest_path))
        archive = make_bundle(path)
    except ManifestInvalid as exc:
        fail(f"{manifest_path} is not a valid manifest", [str(p) for p in exc.problems])
    except CourtyardError as exc:
        fail(str(exc))
    api = client(url, data_dir)
    with err.status(f"Uploading {path} ({len(archive) // 1024 + 1} KiB)…"):
        result = call(
            api,
            "POST",
            "/api/v1/apps",
            content=archive,
            headers={"Content-Type": "application/gzip"},
        )
    name = result["app"]["name"]
    revision = result["revision"]["number"]
    if not result["created"]:
        err.print(f"{name}: revision {revision} is already the current one (no change)")
    rollout = result.get("rollout")
    if wait and rollout is not None:
        deadline = time.monotonic() + timeout
        with err.status(f"Rolling out {name} revision {revision}…"):
            while rollout is not None and rollout["state"] in {"pending", "in-progress"}:
                if time.monotonic() > deadline:
                    fail(f"{name}: revision {revision} not serving after {timeout:.0f} s")
                time.sleep(0.3)
                rollout = call(api, "GET", f"/api/v1/apps/{name}").get("rollout")
        if rollout is not None and rollout["state"] == "failed":
            fail(f"{name}: revision {revision} failed to roll out: {rollout['message']}")
    detail = call(api, "GET", f"/api/v1/apps/{name}")
    if as_json:
        print_json(detail)
        return
    routes = detail.get("routes") or []
    link = f"{api.url}{routes[0]}" if routes else "(no route)"
    out.print(f"[green]✓[/green] {name} revision {revision} → {link}", highlight=False)


@app.command()
def apps(url: Url = None, data_dir: DataDir = Path(".courtyard"), as_json: AsJson = False) -> None:
    """List every app in the catalog with its state."""
    api = client(url, data_dir)
    listing = call(api, "GET", "/api/v1/apps")
    if as_json:
        print_json(listing)
    else:
        out.print(f"Apps at {api.url}:")
        out.print(apps_table(listing))


@app.command()
def status(
    name: Annotated[str | None, typer.Argument(help="One app (default: the fleet).")] = None,
    url: Url = None,
    data_dir: DataDir = Path(".courtyard"),
    as_json: AsJson = False,
) -> None:
    """The node and its apps, or one app with its instances."""
    api = client(url, data_dir)
    if name is None:
        node = call(api, "GET", "/api/v1/node")
        health = call(api, "GET", "/api/v1/health")
        if as_json:
            print_json({"node": node, "health": health})
            return
        out.print(
            f"Node {node['url']} · version {node['version']} · {node['workers']} gateway worker(s)"
        )
        out.print(
            f"Apps at {api.url} (signals over the last {health['windowSeconds'] / 60:g} min):"
        )
        out.print(health_table(health))
        return
    detail = call(api, "GET", f"/api/v1/apps/{name}")
    if as_json:
        print_json(detail)
    else:
        for renderable in app_detail(detail, api.url):
            out.print(renderable)


@app.command()
def logs(
    name: str,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines.")
    ] = False,
    tail: Annotated[int, typer.Option(help="Lines from the end to start with.")] = 100,
    grep: Annotated[
        str | None, typer.Option(help="Only lines matching this regular expression.")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help='Only lines written since: "10m", "2h", "1d" or RFC 3339.')
    ] = None,
    timestamps: Annotated[
        bool, typer.Option("--timestamps", help="Print when each line was written.")
    ] = False,
    url: Url = None,
    data_dir: DataDir = Path(".courtyard"),
) -> None:
    """Print an app's logs (every instance, this revision and earlier ones still on disk)."""
    api = client(url, data_dir)
    params: dict[str, Any] = {"tail": tail, "follow": str(follow).lower()}
    if grep is not None:
        params["grep"] = grep
    if since is not None:
        params["since"] = since
    if timestamps:
        params["timestamps"] = "true"
    try:
        for chunk in api.stream_lines(f"/api/v1/apps/{name}/logs", params):
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
    except CliError as exc:
        fail(str(exc), exc.details)
    except KeyboardInterrupt:
        pass


@app.command()
def restart(name: str, url: Url = None, data_dir: DataDir = Path(".courtyard")) -> None:
    """Restart an app, one instance after another (starts a stopped app)."""
    result = call(client(url, data_dir), "POST", f"/api/v1/apps/{name}/restart")
    out.print(f"Restarting {name} (revision {result['rollout']['revision']})")


@app.command()
def rollback(
    name: str,
    to: Annotated[
        int | None, typer.Option("--to", help="Revision to return to (default: the one before).")
    ] = None,
    url: Url = None,
    data_dir: DataDir = Path(".courtyard"),
) -> None:
    """Make an earlier revision current again and roll it out."""
    body = {"revision": to} if to is not None else None
    result = call(client(url, data_dir), "POST", f"/api/v1/apps/{name}/rollback", json=body)
    out.print(f"Rolling {name} back to revision {result['rollout']['revision']}")


@app.command()
def scale(
    name: str,
    replicas: Annotated[int, typer.Argument(help="Instances to run (1-64).")],
    url: Url = None,
    data_dir: DataDir = Path(".courtyard"),
) -> None:
    """Run this many instances of an app (recorded as a new revision)."""
    body = {"replicas": replicas}
    result = call(client(url, data_dir), "POST", f"/api/v1/apps/{name}/scale", json=body)
    revision = result.get("revision", {}).get("number", "?")
    out.print(f"Scaling {name} to {replicas} instance(s) (revision {revision})")


@app.command()
def stop(name: str, url: Url = None, data_dir: DataDir = Path(".courtyard")) -> None:
    """Stop every instance of an app; it stays in the catalog."""
    call(client(url, data_dir), "POST", f"/api/v1/apps/{name}/stop")
    out.print(f"Stopped {name}")


@app.command()
def remove(
    name: str,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    url: Url = None,
    data_dir: DataDir = Path(".courtyard"),
) -> None:
    """Stop an app and remove it from the catalog."""
    if not yes and sys.stdin.isatty() and not typer.confirm(f"Remove {name} from the fleet?"):
        raise typer.Exit(1)
    call(client(url, data_dir), "DELETE", f"/api/v1/apps/{name}")
    out.print(f"Removed {name}")


@app.command()
def schema() -> None:
    """Print the JSON Schema of courtyard.yaml."""
    print_json(manifest_json_schema())


def main() -> None:
    """Entry point of the ``courtyard`` script."""
    app()
