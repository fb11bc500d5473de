"""One node: store, catalog, runtime, lifecycle, control-plane API, gateway workers, admin.

``Node.run`` is the only place that builds every service (STYLE.md §6); it holds the data
directory's lock for its whole life, so two nodes never share one directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import secrets
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from courtyard import __version__
from courtyard.audit import Actor, AuditConfig, AuditEvent, AuditLog, SqlAuditStore
from courtyard.catalog import AppNotFound, BundleStore, Catalog, SqlCatalogStore, make_bundle
from courtyard.contracts import (
    DEFAULT_TRUST_DOMAIN,
    TRACES_PATH,
    MeshPolicy,
    MeshSettings,
    Route,
    UpstreamInstance,
    UsageMessage,
    WorkerMetrics,
)
from courtyard.core import Clock, SystemClock
from courtyard.gateway import render_metrics
from courtyard.iam import (
    AdminExists,
    Iam,
    IamConfig,
    KeyRing,
    LoginThrottle,
    OidcConfig,
    OidcProvider,
    SqlIamStore,
    SqlOidcStore,
    ThrottlePolicy,
    bootstrap_admin,
)
from courtyard.iam import api as iam_api
from courtyard.lifecycle import DataPlane, Deployment, Lifecycle, LifecycleConfig
from courtyard.lifecycle.api import app_document
from courtyard.mesh import (
    EventBus,
    EventBusConfig,
    HeldCredential,
    HttpMeshSender,
    IdentityAssertionVerifier,
    SqlEventStore,
    WorkloadConfig,
    WorkloadIdentities,
    graph_router,
)
from courtyard.mesh.api import events_router
from courtyard.node._apiauth import ApiAuthenticator
from courtyard.node._config import NodeConfig
from courtyard.node._controlplane import ApiExtras, build_api
from courtyard.node._errors import NodeStartFailed
from courtyard.node._health import health_router
from courtyard.node._identity import IdentityFeed
from courtyard.node._launcher import launcher_apps
from courtyard.node._metrics import FleetCollector, InstanceCollector, admin_app
from courtyard.node._observe import Observability
from courtyard.node._servers import bind_loopback, embedded_server, reserve_port
from courtyard.node._workers import GatewayWorkers, gateway_tls
from courtyard.portal import PortalConfig, portal_router
from courtyard.runtime import RuntimeConfig, Supervisor
from courtyard.store import Database
from courtyard.telemetry.api import alerts_router, slo_router, traces_router
from courtyard.transport import ControlServer

log = logging.getLogger("courtyard.node")

CONTROL_PLANE_APP = "courtyard"
TOKEN_FILE = "admin.token"  # noqa: S105 - a file name, not a secret
INFO_FILE = "node.json"


@dataclass(frozen=True)
class NodeInfo:
    """What a running node tells its CLI through ``node.json`` in the data directory."""

    url: str
    admin_url: str
    pid: int
    version: str
    started_at: float


def read_node_info(data_dir: Path) -> NodeInfo | None:
    """The running node's info, or None when no node has written one."""
    try:
        document = json.loads((data_dir / INFO_FILE).read_text(encoding="utf-8"))
        return NodeInfo(**document)
    except (OSError, ValueError, TypeError):
        return None


def ensure_admin_token(data_dir: Path) -> str:
    """Read the node's admin token, creating it (0600) on first use."""
    path = data_dir / TOKEN_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        token = secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(token + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return token


async def init_node(config: NodeConfig, admin_password: str | None) -> tuple[str, str | None]:
    """``courtyard init``: the data directory, database, admin token and first platform admin.

    Returns the admin's email and, when it was generated, the password (shown once). A second
    init leaves an existing admin alone.
    """
    data_dir = config.data_dir.resolve()
    ensure_admin_token(data_dir)
    db = await asyncio.to_thread(Database.open, config.database)
    try:
        audit = await AuditLog.open(AuditConfig(data_dir=data_dir), SqlAuditStore(db))
        try:
            iam = Iam(SqlIamStore(db), IamConfig(issuer=config.url), audit)
            try:
                user, generated = await bootstrap_admin(iam, config.admin_email, admin_password)
            except AdminExists:
                return config.admin_email, None
            return user.email, generated
        finally:
            await audit.aclose()
    finally:
        db.close()


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


class Node:
    """A whole Courtyard node on one machine."""

    def __init__(self, config: NodeConfig, *, clock: Clock | None = None) -> None:
        self.config = config
        # The clock of SLO windows, alert evaluation and remediation cooldowns; a fault drill
        # injects a fake one to compress hours into seconds. Everything else uses real time.
        self.clock: Clock = clock or SystemClock()
        self.observability: Observability | None = None
        self._stop = asyncio.Event()
        self._worker_metrics: dict[int, WorkerMetrics] = {}
        self.lifecycle: Lifecycle | None = None
        self.url = config.url
        self.admin_url = ""
        self.port = config.port
        # The first admin's generated password, shown once by the CLI (never logged).
        self.generated_admin: tuple[str, str] | None = None
        self.mesh_url = ""
        self._edges: set[str] = set()  # mesh edges the workers saw used since start

    def request_stop(self) -> None:
        """Ask :meth:`run` to shut down gracefully (what SIGTERM and SIGINT do)."""
        self._stop.set()

    async def run(
        self,
        *,
        admin_password: str | None = None,
        demo: list[Path] | None = None,
        on_ready: Callable[[Node], None] | None = None,
        on_demo: Callable[[list[tuple[Path, Deployment | Exception]]], None] | None = None,
        handle_signals: bool = True,
    ) -> None:
        """Start everything, serve until asked to stop, then stop everything in order."""
        config = self.config
        data_dir = config.data_dir.resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        async with contextlib.AsyncExitStack() as stack:
            stack.enter_context(_lock_data_dir(data_dir))
            token = ensure_admin_token(data_dir)
            loop = asyncio.get_running_loop()
            if handle_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.add_signal_handler(sig, self.request_stop)
                    stack.callback(loop.remove_signal_handler, sig)

            tls = gateway_tls(config, data_dir)  # a bad certificate stops here, in one line
            public = reserve_port(config.host, config.port)
            stack.callback(public.close)
            self.port = public.getsockname()[1]
            mesh = reserve_port("127.0.0.1", 0)  # the mesh listens on loopback only
            stack.callback(mesh.close)
            mesh_address = ("127.0.0.1", int(mesh.getsockname()[1]))
            self.mesh_url = f"http://127.0.0.1:{mesh_address[1]}"
            self.url = (
                config.public_url.rstrip("/")
                if config.public_url
                else (f"{config.scheme}://{config.host}:{self.port}")
            )

            db = await asyncio.to_thread(Database.open, config.database)
            stack.callback(db.close)
            audit = await AuditLog.open(AuditConfig(data_dir=data_dir), SqlAuditStore(db))
            stack.push_async_callback(audit.aclose)
            stack.push_async_callback(_record_node, audit, "node.stop", self)
            catalog = Catalog(SqlCatalogStore(db))
            bundles = BundleStore(data_dir / "bundles")

            iam, oidc, keys = await _identity_services(config, self.url, db, audit)
            try:
                user, generated = await bootstrap_admin(iam, config.admin_email, admin_password)
                if generated is not None:
                    self.generated_admin = (user.email, generated)
            except AdminExists:
                pass  # the first admin was made before; nothing to do
            feed = IdentityFeed(
                iam, oidc, audit, issuer=self.url, cookie_name=iam.config.cookie_name
            )
            await feed.load()
            iam.subscribe(feed.credentials_changed)
            oidc.on_revoked(feed.tokens_revoked)
            oidc.on_keys_changed(feed.keys_changed)
            stack.push_async_callback(feed.aclose)

            observe = Observability(config, data_dir, audit, db, self.clock)
            self.observability = observe
            stack.push_async_callback(observe.aclose)

            control_token = secrets.token_urlsafe(32)
            control = ControlServer(
                control_token,
                on_metrics=self._record_metrics,
                on_worker_gone=observe.worker_gone,
                on_spans=observe.spans,
                on_usage=lambda message: self._usage(feed, message),
                credentials_source=feed.full_message,
            )
            control_address = await control.start()
            stack.push_async_callback(control.aclose)

            dataplane = DataPlane(control, drain_timeout=config.drain_timeout)
            dataplane.set_mesh(
                MeshSettings(
                    trust_domain=DEFAULT_TRUST_DOMAIN,
                    events_app=CONTROL_PLANE_APP,
                    events_path="/internal/events/",
                    traces_path=TRACES_PATH,
                )
            )
            feed.bind(control, dataplane)
            housekeeping = asyncio.create_task(feed.housekeeping(), name="identity")
            stack.callback(housekeeping.cancel)

            # Workload identities: each app instance gets a mesh credential file; the control
            # plane holds one too, to deliver events through the mesh.
            clock = SystemClock()
            workloads = WorkloadIdentities(
                keys,
                WorkloadConfig(
                    issuer=self.url,
                    trust_domain=DEFAULT_TRUST_DOMAIN,
                    lifetime=config.workload_lifetime,
                ),
                clock=clock,
                listener=feed.credentials_changed,
                applied=lambda: feed.settle(0),
            )
            held = HeldCredential(workloads, CONTROL_PLANE_APP, "control-plane", clock=clock)
            await held.start()
            stack.push_async_callback(held.aclose)
            renew = asyncio.create_task(held.run(), name="control-plane-credential")
            stack.callback(renew.cancel)
            sweep = asyncio.create_task(_sweep_workloads(workloads), name="workload-sweep")
            stack.callback(sweep.cancel)
            supervisor = Supervisor(
                RuntimeConfig(
                    data_dir=data_dir,
                    node_id=f"{os.uname().nodename}-{os.getpid()}",
                    platform_url=self.url,
                    stop_grace=config.stop_grace,
                    mesh_url=self.mesh_url,
                ),
                dataplane,
                credentials=workloads,
            )
            dataplane.bind_endpoints(supervisor.endpoints)
            await supervisor.start()
            stack.push_async_callback(supervisor.aclose)
            lifecycle = Lifecycle(
                catalog,
                bundles,
                supervisor,
                dataplane,
                audit,
                LifecycleConfig(domain=config.domain),
            )
            self.lifecycle = lifecycle
            stack.push_async_callback(lifecycle.aclose)
            await observe.start(lifecycle)

            async def policies() -> dict[str, MeshPolicy]:
                # The policies the gateway enforces, kept current by the lifecycle: no catalog
                # read per publish.
                return dataplane.mesh_policies()

            sender = HttpMeshSender(self.mesh_url, credential=held.current)
            stack.push_async_callback(sender.aclose)
            bus = EventBus(
                SqlEventStore(db),
                policies,
                _SeenDeliveries(sender, self._edges),
                audit=audit,
                config=EventBusConfig(
                    trust_domain=DEFAULT_TRUST_DOMAIN,
                    max_attempts=config.events_max_attempts,
                    base_delay=config.events_base_delay,
                ),
            )
            events = events_router(
                bus, IdentityAssertionVerifier(keys, self.url, audience=CONTROL_PLANE_APP)
            )

            api_socket = bind_loopback()
            api_port = api_socket.getsockname()[1]
            portal = portal_router(
                iam,
                lambda: launcher_apps(catalog),
                PortalConfig(
                    issuer=self.url,
                    cookie_name=iam.config.cookie_name,
                    cookie_secure=iam.config.cookie_secure,
                    csrf_secret=secrets.token_bytes(32),
                ),
            )
            extras = ApiExtras(
                authenticator=ApiAuthenticator(token, iam, oidc),
                routers=(
                    iam_api.directory_router(iam),
                    iam_api.clients_router(oidc),
                    iam_api.oidc_router(oidc),
                    graph_router(catalog.list, lambda: set(self._edges)),
                    events,
                    traces_router(
                        observe.traces,
                        IdentityAssertionVerifier(keys, self.url, audience=CONTROL_PLANE_APP),
                        on_spans=observe.app_spans,
                    ),
                    slo_router(observe.telemetry, _exists(catalog)),
                    alerts_router(observe.engine),
                    health_router(
                        _app_documents(lifecycle),
                        observe.telemetry,
                        lambda: observe.alerts,
                        self.clock,
                    ),
                    portal,
                ),
                credentials=feed,
            )
            api = build_api(lifecycle, audit, token, self._info, extras)
            api_server = embedded_server(api, api_socket)
            api_task = asyncio.create_task(api_server.serve(sockets=[api_socket]), name="api")
            stack.push_async_callback(_stop_server, api_server, api_task)

            admin_socket = bind_loopback(config.admin_host, config.admin_port)
            self.admin_url = f"http://{config.admin_host}:{admin_socket.getsockname()[1]}"
            collectors = [
                InstanceCollector(supervisor),
                FleetCollector(lambda: observe.stages, observe.telemetry, observe.engine.alerts),
            ]
            admin_server = embedded_server(admin_app(self._metrics_text, collectors), admin_socket)
            admin_task = asyncio.create_task(
                admin_server.serve(sockets=[admin_socket]), name="admin"
            )
            stack.push_async_callback(_stop_server, admin_server, admin_task)

            dataplane.set_builtin(
                [_api_route(), _portal_route()],
                {
                    CONTROL_PLANE_APP: [
                        UpstreamInstance(
                            id="control-plane", host="127.0.0.1", port=api_port, revision=0
                        )
                    ]
                },
            )
            await dataplane.sync()

            workers = GatewayWorkers(
                count=config.workers,
                listen=(config.host, self.port),
                control=control_address,
                token=control_token,
                log_dir=data_dir / "logs" / "_gateway",
                access_log=config.access_log,
                tls=tls,
                mesh=mesh_address,
                telemetry=config.telemetry,
                trace_sample=config.trace_sample,
            )
            await workers.start()
            stack.push_async_callback(workers.aclose, config.stop_grace)
            try:
                await control.wait_workers(config.workers, timeout=30)
            except TimeoutError:
                raise NodeStartFailed(
                    f"gateway workers did not start; see {data_dir / 'logs' / '_gateway'}"
                ) from None

            await _record_node(audit, "node.start", self)
            await lifecycle.reconcile()
            # Only now: before reconcile the data plane holds no mesh policies, and the bus
            # would bury every due delivery as one to an app that no longer subscribes.
            delivery = asyncio.create_task(bus.run(), name="events")
            stack.callback(delivery.cancel)
            _write_atomic(
                data_dir / INFO_FILE,
                json.dumps(
                    {
                        "url": self.url,
                        "admin_url": self.admin_url,
                        "pid": os.getpid(),
                        "version": __version__,
                        "started_at": time.time(),
                    }
                ),
            )
            stack.callback(_unlink, data_dir / INFO_FILE)
            if on_ready is not None:
                on_ready(self)
            if demo:
                await _demo_groups(iam, config.admin_email)
                results = await self._deploy_demo(lifecycle, demo)
                if on_demo is not None:
                    on_demo(results)
            await self._stop.wait()
            log.info("node stopping")

    async def _deploy_demo(
        self, lifecycle: Lifecycle, folders: list[Path]
    ) -> list[tuple[Path, Deployment | Exception]]:
        results: list[tuple[Path, Deployment | Exception]] = []
        for folder in folders:
            try:
                archive = await asyncio.to_thread(make_bundle, folder)
                results.append((folder, await lifecycle.deploy_bundle(archive)))
            except Exception as exc:  # one broken demo app must not stop the others
                results.append((folder, exc))
        await lifecycle.wait_idle()
        return results

    def _usage(self, feed: IdentityFeed, message: UsageMessage) -> None:
        feed.usage(message)
        self._edges.update(message.get("edges", []))

    def _record_metrics(self, worker: int, metrics: WorkerMetrics) -> None:
        self._worker_metrics[worker] = metrics
        if self.observability is not None:
            self.observability.metrics(worker, metrics)

    def _metrics_text(self) -> str:
        return render_metrics(dict(self._worker_metrics))

    def _info(self) -> dict[str, Any]:
        return {
            "version": __version__,
            "url": self.url,
            "adminUrl": self.admin_url,
            "workers": self.config.workers,
            "pid": os.getpid(),
        }


def _exists(catalog: Catalog) -> Callable[[str], Awaitable[bool]]:
    async def exists(name: str) -> bool:
        try:
            await catalog.get(name)
        except AppNotFound:
            return False
        return True

    return exists


def _app_documents(lifecycle: Lifecycle) -> Callable[[], Awaitable[list[dict[str, Any]]]]:
    async def documents() -> list[dict[str, Any]]:
        return [app_document(lifecycle, app) for app in await lifecycle.catalog.list()]

    return documents


async def _record_node(audit: AuditLog, action: str, node: Node) -> None:
    """Node start and stop are control-plane changes too: they go in the trail."""
    config = node.config
    await audit.record(
        AuditEvent(
            actor=Actor(kind="system", id="courtyard"),
            action=action,
            target=f"node/{os.uname().nodename}",
            outcome="success",
            details={
                "version": __version__,
                "url": node.url,
                "workers": config.workers,
                "database": config.database.split("://", 1)[0],
                "pid": os.getpid(),
            },
        )
    )


class _SeenDeliveries:
    """A delivery sender that marks ``_events/<topic>><subscriber>`` as seen on a 2xx, for the
    dependency graph (the gateway workers do not count the control plane's own deliveries)."""

    def __init__(self, sender: HttpMeshSender, edges: set[str]) -> None:
        self._sender = sender
        self._edges = edges

    async def send(self, subscriber: str, handler: str, cloudevent: str) -> int:
        status = await self._sender.send(subscriber, handler, cloudevent)
        if 200 <= status < 300:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                self._edges.add(f"_events/{json.loads(cloudevent)['type']}>{subscriber}")
        return status


async def _sweep_workloads(workloads: WorkloadIdentities) -> None:
    """Expired workload credentials leave the gateway tables even when nothing new is issued."""
    while True:
        await asyncio.sleep(30)
        try:
            workloads.sweep()
        except Exception:  # the next sweep retries; a failure must not end the loop
            log.exception("workload credential sweep failed")


async def _identity_services(
    config: NodeConfig, issuer: str, db: Database, audit: AuditLog
) -> tuple[Iam, OidcProvider, KeyRing]:
    """IAM (directory, sign-in, sessions, tokens) and the OpenID provider over the database."""
    clock = SystemClock()
    iam_config = IamConfig(
        issuer=issuer,
        session_idle=config.session_idle,
        session_absolute=config.session_absolute,
        cookie_secure=config.is_tls,
    )
    throttle = LoginThrottle(clock, ThrottlePolicy(max_delay=config.login_max_delay))
    iam = Iam(SqlIamStore(db), iam_config, audit, clock=clock, throttle=throttle)
    oidc_config = OidcConfig(
        issuer=issuer,
        propagation_delay=config.key_propagation,
        session_cookie=iam_config.cookie_name,
    )
    oidc_store = SqlOidcStore(db)
    keys = await KeyRing.load(
        oidc_store,
        clock=clock,
        propagation_delay=oidc_config.propagation_delay,
        lifetime=oidc_config.max_token_lifetime,
    )
    oidc = OidcProvider(oidc_store, keys, iam, audit, oidc_config, clock=clock)
    await oidc.load()
    return iam, oidc, keys


# The demo fleet's apps admit these groups (examples/*/courtyard.yaml); the first admin joins
# them so that `make run` shows a launcher with every demo app.
_DEMO_GROUPS = {"finance": "Finance", "ops": "Operations", "platform": "Platform team"}


async def _demo_groups(iam: Iam, admin_email: str) -> None:
    existing = {group.name: group for group in await iam.list_groups()}
    admin = await iam.get_user(admin_email)
    for name, title in _DEMO_GROUPS.items():
        group = existing.get(name) or await iam.create_group(None, name, title)
        if admin.id not in group.members:
            await iam.add_member(None, name, admin.id)


def _portal_route() -> Route:
    """Everything no app claims goes to the control plane: the launcher, sign-in pages and the
    OpenID provider (the longest prefix wins, so apps keep their paths)."""
    return Route(
        app=CONTROL_PLANE_APP,
        path="/",
        host=None,
        strip_prefix=False,
        max_body_bytes=1024 * 1024,
        connect_timeout=2.0,
        response_timeout=60.0,
    )


def _api_route() -> Route:
    return Route(
        app=CONTROL_PLANE_APP,
        path="/api/v1/",
        host=None,
        strip_prefix=False,
        max_body_bytes=64 * 1024 * 1024,
        connect_timeout=2.0,
        response_timeout=300.0,
    )


async def _stop_server(server: Any, task: asyncio.Task[None]) -> None:
    server.should_exit = True
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await asyncio.wait_for(task, 10)


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


@contextlib.contextmanager
def _lock_data_dir(data_dir: Path) -> Any:
    handle = (data_dir / "node.lock").open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise NodeStartFailed(
            f"another node is running with the data directory {data_dir}"
        ) from None
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()
