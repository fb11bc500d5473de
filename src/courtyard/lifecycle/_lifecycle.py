"""The deploy, restart, stop and remove flows: catalog first (durable), runtime after.

A deploy is acknowledged once its revision is committed to the catalog; the rollout then runs
in the background and its progress is visible in :meth:`Lifecycle.rollout_of`. When the node
restarts, :meth:`Lifecycle.reconcile` brings every app back to its desired state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from courtyard.audit import Actor, AuditEvent, AuditReceipt, Outcome
from courtyard.catalog import (
    App,
    BundleStore,
    Catalog,
    Manifest,
    Registration,
    Revision,
    parse_manifest,
)
from courtyard.core import Clock, CourtyardError, SystemClock
from courtyard.lifecycle._dataplane import DataPlane
from courtyard.lifecycle._errors import AppNotDeployable, NoEarlierRevision
from courtyard.lifecycle._specs import access_for, mesh_for, routes_for, workload_for
from courtyard.runtime import (
    AppNotRunning,
    AppState,
    InstanceStatus,
    SupervisorError,
    WorkloadSpec,
)

log = logging.getLogger("courtyard.lifecycle")

RolloutState = Literal["pending", "in-progress", "succeeded", "failed"]


class AuditRecorder(Protocol):
    """Where the lifecycle records what it did (the audit log; a list in tests)."""

    async def record(self, event: AuditEvent) -> AuditReceipt: ...


@dataclass(frozen=True)
class Caller:
    """Who asked for an action, and the request that carried it (for the audit trail)."""

    actor: Actor
    request_id: str | None = None
    trace_id: str | None = None


SYSTEM = Caller(Actor(kind="system", id="courtyard"))


class Runtime(Protocol):
    """What the lifecycle needs of a runtime backend (the local supervisor, later Kubernetes)."""

    async def apply(self, spec: WorkloadSpec) -> None: ...

    async def restart(self, app: str) -> None: ...

    async def stop(self, app: str) -> None: ...

    async def remove(self, app: str) -> None: ...

    def app_state(self, app: str) -> AppState: ...

    def instances(self, app: str | None = None) -> list[InstanceStatus]: ...

    def log_files(self, app: str) -> list[Path]: ...


@dataclass(frozen=True)
class LifecycleConfig:
    """Settings of the lifecycle service."""

    domain: str | None = None  # host routing <app>.<domain>


@dataclass
class Rollout:
    """Progress of the latest rollout of one app."""

    app: str
    revision: int
    state: RolloutState = "pending"
    message: str = ""
    started_at: float = 0.0
    finished_at: float | None = None


@dataclass(frozen=True)
class Deployment:
    """What a deploy request answers: the registration and whether a rollout started."""

    registration: Registration
    rollout: Rollout | None


@dataclass
class _AppTasks:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    task: asyncio.Task[None] | None = None


class Lifecycle:
    """Turns catalog changes into runtime actions and data-plane snapshots."""

    def __init__(
        self,
        catalog: Catalog,
        bundles: BundleStore,
        supervisor: Runtime,
        dataplane: DataPlane,
        audit: AuditRecorder,
        config: LifecycleConfig | None = None,
        *,
        clock: Clock | None = None,
    ) -> None:
        self._catalog = catalog
        self._bundles = bundles
        self._supervisor = supervisor
        self._dataplane = dataplane
        self._audit = audit
        self._config = config or LifecycleConfig()
        self._clock = clock or SystemClock()
        self._rollouts: dict[str, Rollout] = {}
        self._apps: dict[str, _AppTasks] = {}
        self._observers: list[Callable[[list[App]], None]] = []

    @property
    def catalog(self) -> Catalog:
        return self._catalog

    @property
    def supervisor(self) -> Runtime:
        return self._supervisor

    # -- deploys ---------------------------------------------------------------------------

    async def deploy_bundle(self, archive: bytes, caller: Caller = SYSTEM) -> Deployment:
        """Store a bundle (a gzip tar with ``courtyard.yaml`` on top), register it, roll out."""
        async with self._audited(caller, "app.deploy", "bundle") as note:
            bundle = await asyncio.to_thread(self._bundles.ingest, archive)
            note["bundle"] = bundle.digest
            manifest = parse_manifest(bundle.manifest_text, source="courtyard.yaml")
            note["target"] = f"app/{manifest.metadata.name}"
            registration = await self._catalog.register(manifest, bundle.digest)
            _note_registration(note, registration)
        return await self._after_register(registration, caller)

    async def deploy_manifest(
        self, text: str | bytes, source: str = "courtyard.yaml", caller: Caller = SYSTEM
    ) -> Deployment:
        """Register a manifest without code (an Interface, or a command needing no files)."""
        async with self._audited(caller, "app.deploy", "manifest") as note:
            manifest = parse_manifest(text, source=source)
            note["target"] = f"app/{manifest.metadata.name}"
            registration = await self._catalog.register(manifest, None)
            _note_registration(note, registration)
        return await self._after_register(registration, caller)

    async def _after_register(self, registration: Registration, caller: Caller) -> Deployment:
        await self._refresh_routes()
        app = registration.app
        if not self._runs(app) or app.desired_state != "running":
            return Deployment(registration, None)
        current = self._rollouts.get(app.name)
        if not registration.created and current is not None and current.state != "failed":
            return Deployment(registration, current)
        rollout = self._start_rollout(app.name, registration.revision, caller)
        return Deployment(registration, rollout)

    # -- actions on running apps -----------------------------------------------------------

    async def restart(self, name: str, caller: Caller = SYSTEM) -> Rollout:
        """Restart an app (rolling, one revision); starts it if it was stopped."""
        async with self._audited(caller, "app.restart", f"app/{name}") as note:
            app = await self._catalog.get(name)
            self._require_runnable(app)
            if app.desired_state != "running":
                await self._catalog.set_desired(name, "running")
            revision = await self._catalog.revision(name, app.current_revision)
            note["revision"] = revision.number
        return self._start_rollout(name, revision, caller, restart=True)

    async def rollback(self, name: str, to: int | None = None, caller: Caller = SYSTEM) -> Rollout:
        """Make an earlier revision current again and roll it out (``kubectl rollout undo``).

        ``to`` None means the revision before the current one. The revision keeps its number:
        the history is not rewritten, and deploying the bad revision again makes it current.
        """
        async with self._audited(caller, "app.rollback", f"app/{name}") as note:
            app = await self._catalog.get(name)
            self._require_runnable(app)
            if to is None:
                older = [r.number for r in await self._catalog.revisions(name)]
                older = [n for n in older if n < app.current_revision]
                if not older:
                    raise NoEarlierRevision(name, app.current_revision)
                to = older[-1]
            revision = await self._catalog.revision(name, to)
            note["from"], note["revision"] = app.current_revision, revision.number
            if to != app.current_revision:
                await self._catalog.set_current(name, to)
            if app.desired_state != "running":
                await self._catalog.set_desired(name, "running")
        await self._refresh_routes()
        return self._start_rollout(name, revision, caller)

    async def scale(self, name: str, replicas: int, caller: Caller = SYSTEM) -> Deployment:
        """Run ``replicas`` instances: a new revision of the current manifest and bundle with
        only ``spec.run.replicas`` changed, so the change is in the history and survives a
        restart of the node."""
        async with self._audited(caller, "app.scale", f"app/{name}") as note:
            app = await self._catalog.get(name)
            self._require_runnable(app)
            current = await self._catalog.revision(name, app.current_revision)
            run = current.manifest.spec.run
            assert run is not None  # _require_runnable
            note["from"], note["replicas"] = run.replicas, replicas
            document = current.manifest.document()
            document["spec"]["run"]["replicas"] = replicas
            manifest = Manifest.from_document(document)  # ManifestInvalid names the bound
            registration = await self._catalog.register(manifest, current.bundle_digest)
            _note_registration(note, registration)
        return await self._after_register(registration, caller)

    async def stop(self, name: str, caller: Caller = SYSTEM) -> None:
        """Stop every instance of an app; it stays in the catalog, desired state "stopped"."""
        async with self._audited(caller, "app.stop", f"app/{name}"):
            app = await self._catalog.get(name)
            self._require_runnable(app)
            await self._catalog.set_desired(name, "stopped")
        tasks = self._tasks(name)
        await self._cancel(tasks)
        async with tasks.lock:
            with contextlib.suppress(AppNotRunning):
                await self._supervisor.stop(name)
        await self._dataplane.sync()

    async def remove(self, name: str, caller: Caller = SYSTEM) -> None:
        """Stop an app and take it out of the catalog (its name, routes and capabilities free)."""
        async with self._audited(caller, "app.remove", f"app/{name}"):
            await self._catalog.get(name)
            tasks = self._tasks(name)
            await self._cancel(tasks)
            async with tasks.lock:
                with contextlib.suppress(AppNotRunning):
                    await self._supervisor.remove(name)
                await self._catalog.remove(name)
        self._rollouts.pop(name, None)
        self._apps.pop(name, None)
        await self._refresh_routes()
        await self._dataplane.sync()

    async def reconcile(self) -> None:
        """Bring every app to its desired state (at node start)."""
        await self._refresh_routes()
        await self._dataplane.sync()
        for app in await self._catalog.list():
            if self._runs(app) and app.desired_state == "running":
                revision = await self._catalog.revision(app.name, app.current_revision)
                self._start_rollout(app.name, revision, SYSTEM)

    async def wait_idle(self) -> None:
        """Wait for every rollout under way to finish (tests and the demo use it)."""
        tasks = [t.task for t in self._apps.values() if t.task is not None and not t.task.done()]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def aclose(self) -> None:
        """Cancel rollouts under way (the runtime stops the processes itself)."""
        for tasks in self._apps.values():
            await self._cancel(tasks)

    # -- status ----------------------------------------------------------------------------

    def rollout_of(self, name: str) -> Rollout | None:
        """The latest rollout of an app since this node started, if any."""
        return self._rollouts.get(name)

    def runtime_state(self, app: App) -> AppState | None:
        """The runtime's view of an app, or None when nothing runs for it."""
        if not self._runs(app):
            return None
        try:
            return self._supervisor.app_state(app.name)
        except AppNotRunning:
            return None

    # -- internals -------------------------------------------------------------------------

    @staticmethod
    def _runs(app: App) -> bool:
        return app.kind != "Interface" and app.manifest.spec.run is not None

    def _require_runnable(self, app: App) -> None:
        if not self._runs(app):
            raise AppNotDeployable(app.name, f"a {app.kind} has no process to run")

    def _tasks(self, name: str) -> _AppTasks:
        return self._apps.setdefault(name, _AppTasks())

    async def _cancel(self, tasks: _AppTasks) -> None:
        if tasks.task is not None and not tasks.task.done():
            tasks.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await tasks.task

    def on_catalog(self, observer: Callable[[list[App]], None]) -> None:
        """Call ``observer`` with every app whenever the catalog changes (deploy, rollback,
        scale, remove) and at reconcile: how SLOs and runbooks follow the manifests."""
        self._observers.append(observer)

    async def _refresh_routes(self) -> None:
        routes = []
        access = {}
        mesh = {}
        apps = await self._catalog.list()
        for app in apps:
            routes.extend(routes_for(app, self._config.domain))
            access[app.name] = access_for(app)
            mesh[app.name] = mesh_for(app)
        self._dataplane.set_routes(routes, access, mesh)
        for observer in self._observers:
            try:
                observer(apps)
            except Exception:  # an observer's bug must not fail a deploy
                log.exception("catalog observer failed")

    def _start_rollout(
        self, name: str, revision: Revision, caller: Caller, *, restart: bool = False
    ) -> Rollout:
        rollout = Rollout(
            app=name, revision=revision.number, state="pending", started_at=self._clock.time()
        )
        self._rollouts[name] = rollout
        tasks = self._tasks(name)
        previous = tasks.task
        tasks.task = asyncio.create_task(
            self._roll_out(tasks, previous, rollout, revision, caller, restart),
            name=f"rollout-{name}-{revision.number}",
        )
        return rollout

    async def _roll_out(
        self,
        tasks: _AppTasks,
        previous: asyncio.Task[None] | None,
        rollout: Rollout,
        revision: Revision,
        caller: Caller,
        restart: bool,
    ) -> None:
        # The newest request wins: a rollout still waiting behind an older one is replaced.
        if previous is not None and not previous.done():
            previous.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await previous
        async with tasks.lock:
            rollout.state = "in-progress"
            try:
                bundle = (
                    self._bundles.path(revision.bundle_digest) if revision.bundle_digest else None
                )
                spec = workload_for(revision, bundle)
                if restart:
                    try:
                        self._supervisor.app_state(revision.app)
                        await self._supervisor.restart(revision.app)
                    except AppNotRunning:
                        await self._supervisor.apply(spec)
                else:
                    await self._supervisor.apply(spec)
            except SupervisorError as exc:
                rollout.state, rollout.message = "failed", str(exc)
                log.warning(
                    "rollout of %s revision %d failed: %s", rollout.app, rollout.revision, exc
                )
            except asyncio.CancelledError:
                rollout.state, rollout.message = "failed", "replaced by a newer request"
                raise
            except Exception as exc:  # the node must outlive any one app's failure
                rollout.state, rollout.message = "failed", f"internal error: {exc}"
                log.exception("rollout of %s failed", rollout.app)
            else:
                rollout.state = "succeeded"
                rollout.message = f"revision {rollout.revision} serving"
            finally:
                rollout.finished_at = self._clock.time()
                if rollout.state in ("succeeded", "failed"):
                    await self._record(
                        caller,
                        "app.rollout",
                        f"app/{rollout.app}",
                        "success" if rollout.state == "succeeded" else "failure",
                        reason=rollout.message,
                        details={"revision": rollout.revision},
                    )

    # -- audit -----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _audited(
        self, caller: Caller, action: str, target: str
    ) -> AsyncIterator[dict[str, Any]]:
        """Record the action's outcome once it is durable (or refused), before it is answered.

        The body may set ``note["target"]`` once it knows it, and add details to ``note``.
        """
        note: dict[str, Any] = {}
        try:
            yield note
        except CourtyardError as exc:
            where = note.pop("target", target)
            reason = str(exc).splitlines()[0][:500]
            await self._record(caller, action, where, "failure", reason=reason, details=note)
            raise
        where = note.pop("target", target)
        await self._record(caller, action, where, "success", details=note)

    async def _record(
        self,
        caller: Caller,
        action: str,
        target: str,
        outcome: Outcome,
        *,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        await self._audit.record(
            AuditEvent(
                actor=caller.actor,
                action=action,
                target=target,
                outcome=outcome,
                reason=reason or None,
                request_id=caller.request_id,
                trace_id=caller.trace_id,
                details=details or {},
            )
        )


def _note_registration(note: dict[str, Any], registration: Registration) -> None:
    note["revision"] = registration.revision.number
    note["digest"] = registration.revision.digest
    note["created"] = registration.created
