"""The supervisor: desired workloads in, running instances and endpoints out.

It owns the per-app sets of instances (serving, candidates of a rollout, draining), runs
rolling replacements, tells the data plane when endpoints change, and on start cleans up after
a previous run of the same data directory. Per-instance work lives in ``_instances``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import secrets
import shutil
from collections.abc import Coroutine, Iterable
from pathlib import Path
from typing import Any

from courtyard.contracts import UpstreamInstance
from courtyard.core import Clock, SystemClock, is_dns_label
from courtyard.runtime._backoff import RestartPolicy
from courtyard.runtime._config import RuntimeConfig
from courtyard.runtime._deadlines import within
from courtyard.runtime._environment import LOOPBACK, check_spec
from courtyard.runtime._errors import AppNotRunning, RolloutFailed, SupervisorError
from courtyard.runtime._instances import Instance
from courtyard.runtime._launcher import LocalProcessLauncher, ProcessLauncher
from courtyard.runtime._logs import log_files_of
from courtyard.runtime._models import (
    AppState,
    InstanceStatus,
    TrafficSwitch,
    WorkloadSpec,
    instance_id_pattern,
)
from courtyard.runtime._orphans import clean_previous_run
from courtyard.runtime._phases import (
    PhaseInputs,
    crash_loop_message,
    derive_phase,
    describe_wait,
    join_notes,
)
from courtyard.runtime._workload import CREDENTIAL_KEY, MESH_URL_KEY, CredentialIssuer

log = logging.getLogger("courtyard.runtime")

# Extra time, beyond ready_timeout, before a rollout stops waiting for a keeper that hangs
# (copying a large bundle happens before the instance's own ready_timeout starts).
ROLLOUT_SLACK = 60.0
# A background sync that takes longer is given up (and logged) so later changes get through.
BACKGROUND_SYNC_TIMEOUT = 60.0


class _App:
    """Everything the supervisor knows of one app."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.spec: WorkloadSpec | None = None  # the serving spec (last successful rollout)
        self.attempted: WorkloadSpec | None = None  # the last spec asked for
        self.active: list[Instance] = []  # the serving set: ready ones are in endpoints()
        self.candidates: list[Instance] = []  # a rollout's new instances, not yet serving
        self.draining: list[Instance] = []  # left the serving set, being stopped
        self.is_stopped = False
        self.has_failed = False  # the last rollout failed and nothing serves
        self.is_removed = False
        self.note = ""  # why the last rollout failed
        self.lock = asyncio.Lock()

    @property
    def current(self) -> WorkloadSpec:
        spec = self.spec or self.attempted
        assert spec is not None  # an _App exists only once a spec was accepted
        return spec

    def everyone(self) -> list[Instance]:
        return [*self.active, *self.candidates, *self.draining]


class Supervisor:
    """Runs workloads as local processes (see docs/runtime.md)."""

    def __init__(
        self,
        config: RuntimeConfig,
        traffic: TrafficSwitch,
        *,
        clock: Clock | None = None,
        launcher: ProcessLauncher | None = None,
        credentials: CredentialIssuer | None = None,
    ) -> None:
        """``credentials``: mints the mesh credential of every instance (None: no mesh)."""
        self._config = config
        self._credentials = credentials
        self._traffic = traffic
        self._clock = clock or SystemClock()
        self._launcher = launcher or LocalProcessLauncher(clock=self._clock)
        self._policy = RestartPolicy(
            base=config.restart_backoff_base,
            cap=config.restart_backoff_max,
            crash_loop_restarts=config.crash_loop_restarts,
            crash_loop_window=config.crash_loop_window,
        )
        self._apps: dict[str, _App] = {}
        self._is_started = False
        self._is_closed = False
        self._sync_wanted = asyncio.Event()
        self._syncer: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()

    # -- life of the supervisor -------------------------------------------------------------

    async def start(self) -> None:
        """Clean up processes and files a previous run left behind; start background work."""
        if self._is_started:
            return
        for folder in (self._config.instances_dir, self._config.logs_dir, self._config.records_dir):
            folder.mkdir(parents=True, exist_ok=True)
        await clean_previous_run(self._config, self._clock)
        self._syncer = asyncio.create_task(self._sync_forever(), name="runtime-sync")
        self._is_started = True

    async def aclose(self) -> None:
        """Stop every instance (SIGTERM, grace, SIGKILL) and every background task."""
        if self._is_closed:
            return
        self._is_closed = True
        if self._syncer is not None:
            self._syncer.cancel()
            await asyncio.wait({self._syncer})
        instances = [i for app in self._apps.values() for i in app.everyone()]
        await asyncio.gather(*(i.stop(self._config.stop_grace) for i in instances))
        for app in self._apps.values():
            app.active, app.candidates, app.draining = [], [], []
        if self._background:
            await asyncio.wait(self._background)

    # -- actions ----------------------------------------------------------------------------

    async def apply(self, spec: WorkloadSpec) -> None:
        """Run ``spec``: start the app, or roll it out to a new revision, or rescale it.

        Returns once the new instances are ready, the data plane sends them the traffic and
        the old ones are stopped. Raises InvalidSpec or PlaceholderError (nothing started),
        or RolloutFailed: the old instances keep serving, or, when there are none, the new
        ones are kept under restart policy (they may recover or end in crash-loop).
        """
        self._require_open()
        check_spec(spec, self._config, self._workload_keys())
        app = self._apps.setdefault(spec.app, _App(spec.app))
        async with app.lock:
            if app.is_removed:  # removed while this call waited for the lock
                return await self.apply(spec)
            app.attempted = spec
            running = not app.is_stopped and not app.has_failed and app.spec is not None
            if running and app.spec == spec and self.app_state(spec.app).phase == "running":
                return None
            if running and app.spec == dataclasses.replace(spec, replicas=app.current.replicas):
                return await self._rescale(app, spec)
            return await self._roll_out(app, spec)

    async def restart(self, app: str) -> None:
        """Rolling restart of the current spec (starts a stopped app)."""
        self._require_open()
        state = self._app(app)
        async with state.lock:
            if state.is_removed:
                raise AppNotRunning(app)
            await self._roll_out(state, state.current)

    async def stop(self, app: str) -> None:
        """Drain and stop every instance; the app stays known, phase "stopped"."""
        state = self._app(app)
        async with state.lock:
            if state.is_removed:
                raise AppNotRunning(app)
            await self._stop_everything(state)

    async def remove(self, app: str) -> None:
        """Stop the app and forget it; its working copies go, its logs stay."""
        state = self._app(app)
        async with state.lock:
            if state.is_removed:
                raise AppNotRunning(app)
            await self._stop_everything(state)
            state.is_removed = True
            self._apps.pop(app, None)
            await asyncio.to_thread(self._remove_working_copies, app)

    # -- views ------------------------------------------------------------------------------

    def endpoints(self) -> dict[str, list[UpstreamInstance]]:
        """App name -> its ready, non-draining instances (every known app, maybe empty)."""
        return {
            name: [
                UpstreamInstance(id=i.id, host=LOOPBACK, port=i.port, revision=i.spec.revision)
                for i in app.active
                if i.is_ready
            ]
            for name, app in self._apps.items()
        }

    def instances(self, app: str | None = None) -> list[InstanceStatus]:
        """Every instance (of one app, or of all); unknown apps have none."""
        apps = self._apps.values() if app is None else [a for a in [self._apps.get(app)] if a]
        return [i.status() for a in apps for i in a.everyone()]

    def app_state(self, app: str) -> AppState:
        """Phase, counts and a message for one app; AppNotRunning if unknown."""
        state = self._app(app)
        spec = state.current
        ready = sum(1 for i in state.active if i.is_ready)
        # Like Kubernetes' CrashLoopBackOff, shown while a crash-looping instance is not up.
        looping = [i for i in state.active if i.history.is_crash_looping and not i.is_ready]
        desired = 0 if state.is_stopped else spec.replicas
        phase = derive_phase(
            PhaseInputs(
                is_stopped=state.is_stopped,
                has_failed=state.has_failed,
                is_rolling_out=bool(state.candidates),
                serving=len(state.active),
                desired=desired,
                ready=ready,
                is_crash_looping=bool(looping),
            )
        )
        notes: list[str] = []
        now = self._clock.monotonic()
        if looping:
            i = looping[0]
            wait = i.next_try_at - now if i.next_try_at is not None else None
            notes.append(crash_loop_message(i.id, i.last_failure, i.history.consecutive, wait))
        elif state.candidates:
            new_ready = sum(1 for i in state.candidates if i.is_ready)
            target = state.candidates[0].spec.revision
            notes.append(
                f"rolling out revision {target}: {new_ready} of {len(state.candidates)} new "
                "instances ready"
            )
        elif phase == "degraded":
            notes.append(f"{ready} of {desired} instances ready")
            for i in state.active:
                if i.state == "backoff" and i.next_try_at is not None:
                    notes.append(
                        f"instance {i.id} {i.last_failure}, {describe_wait(i.next_try_at - now)}"
                    )
        notes.append(state.note)
        notes.extend(i.limits for i in state.active if "not enforced" in i.limits)
        return AppState(
            app=app,
            revision=spec.revision,
            phase=phase,
            desired_replicas=desired,
            ready_replicas=ready,
            restarts=sum(i.restarts for i in state.active),
            message=join_notes(notes),
        )

    def log_files(self, app: str) -> list[Path]:
        """Current and rotated log files of every instance the app had, oldest first."""
        if not is_dns_label(app):
            return []
        return log_files_of(self._config.logs_dir / app, instance_id_pattern(app))

    # -- rollouts ---------------------------------------------------------------------------

    async def _roll_out(self, app: _App, spec: WorkloadSpec) -> None:
        """Start a full new set, wait until all are ready, switch traffic, stop the old set."""
        new = await self._start_candidates(app, spec, spec.replicas)
        old = app.active
        app.active, app.candidates = new, []
        app.spec = spec
        app.is_stopped = app.has_failed = False
        app.note = ""
        log.info("%s revision %d serving on %d instance(s)", app.name, spec.revision, len(new))
        await self._retire(old, spec.drain_timeout)

    async def _rescale(self, app: _App, spec: WorkloadSpec) -> None:
        """Same revision, other replica count: add or retire instances, keep the rest."""
        current = app.active
        if spec.replicas > len(current):
            new = await self._start_candidates(app, spec, spec.replicas - len(current))
            app.active, app.candidates = [*current, *new], []
            app.spec = spec
            await self._sync_now(spec.drain_timeout)
            return
        # Retire instances that do not serve first.
        ranked = sorted(current, key=lambda i: not i.is_ready)
        app.active = ranked[: spec.replicas]
        app.spec = spec
        await self._retire(ranked[spec.replicas :], spec.drain_timeout)

    async def _start_candidates(self, app: _App, spec: WorkloadSpec, count: int) -> list[Instance]:
        """Start ``count`` new instances and wait until all are ready, or raise RolloutFailed."""
        taken = {i.id for a in self._apps.values() for i in a.everyone()}
        new: list[Instance] = []
        while len(new) < count:
            instance_id = f"{spec.app}-{spec.revision}-{secrets.token_hex(3)}"
            if instance_id not in taken:
                taken.add(instance_id)
                new.append(self._new_instance(instance_id, spec))
        app.candidates = new
        app.is_stopped = app.has_failed = False
        try:
            for instance in new:
                instance.start()
            failure = await self._first_failure(new, spec)
        except BaseException:  # cancelled: the caller gave up on this rollout
            await self._stop_all(new)
            app.candidates = []
            app.has_failed = not any(i.is_ready for i in app.active)
            app.note = f"rollout of revision {spec.revision} was cancelled"
            raise
        if failure is None:
            return new
        culprit, reason = failure
        app.note = f"rollout of revision {spec.revision} failed: instance {culprit.id} {reason}"
        log.warning("%s: %s", app.name, app.note)
        if app.active:  # the old instances keep serving; the new ones go
            await self._stop_all(new)
            app.candidates = []
        else:
            # Nothing else would serve: keep the new instances under restart policy (they
            # may recover, or end up in crash-loop), as Kubernetes keeps a failing Deployment.
            app.active, app.candidates = new, []
            app.spec = spec
            self._sync_wanted.set()
        app.has_failed = not any(i.is_ready for i in app.active)
        tail = culprit.log_tail()
        raise RolloutFailed(
            app.name,
            spec.revision,
            f"instance {culprit.id} {reason}",
            instance=culprit.id,
            log_tail=tail,
        )

    async def _first_failure(
        self, new: list[Instance], spec: WorkloadSpec
    ) -> tuple[Instance, str] | None:
        """Wait for every new instance's first outcome; the first failure, or None if all ready."""
        outcomes = {i.first_outcome: i for i in new}

        async def first_bad() -> tuple[Instance, str] | None:
            pending: set[asyncio.Future[str | None]] = set(outcomes)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for outcome in done:
                    reason = outcome.result()
                    if reason is not None:
                        return outcomes[outcome], reason
            return None

        try:
            return await within(self._clock, spec.ready_timeout + ROLLOUT_SLACK, first_bad())
        except TimeoutError:
            stuck = next((i for i in new if not i.first_outcome.done()), new[0])
            return stuck, f"not ready within {spec.ready_timeout:g} s: still {stuck.state}"

    async def _retire(self, old: list[Instance], drain_timeout: float) -> None:
        """Take ``old`` out of the endpoints, wait for the data plane to drain, stop them."""
        await asyncio.gather(*(i.drain() for i in old))
        for instance in old:
            self._apps_of(instance).draining.append(instance)
        try:
            await self._sync_now(drain_timeout)
        finally:
            # Stopping goes on even if the caller is cancelled now.
            stopping = self._spawn(self._stop_draining(old))
        await asyncio.shield(stopping)

    async def _stop_everything(self, app: _App) -> None:
        everyone = [*app.active, *app.candidates]
        app.active, app.candidates = [], []
        app.is_stopped = True
        app.has_failed = False
        app.note = ""
        await self._retire(everyone, app.current.drain_timeout)

    async def _stop_draining(self, old: list[Instance]) -> None:
        await self._stop_all(old)
        for instance in old:
            app = self._apps_of(instance)
            if instance in app.draining:
                app.draining.remove(instance)

    async def _stop_all(self, instances: Iterable[Instance]) -> None:
        await asyncio.gather(*(i.stop(self._config.stop_grace) for i in instances))

    # -- the data plane ---------------------------------------------------------------------

    async def _sync_now(self, timeout: float) -> None:
        """Tell the data plane and wait until it drained (at most ``timeout`` seconds)."""
        try:
            await within(self._clock, timeout, self._traffic.sync())
        except TimeoutError:
            log.warning("the data plane did not confirm the switch within %g s; going on", timeout)
        except Exception:
            log.exception("the data plane sync failed; going on")

    def _changed(self, instance: Instance) -> None:
        app = self._apps.get(instance.spec.app)
        if app is not None and instance in app.active:
            self._sync_wanted.set()
            if app.has_failed and all(i.is_ready for i in app.active):
                # A failed first rollout that recovered under restart policy.
                app.has_failed = False
                app.note = ""

    async def _sync_forever(self) -> None:
        """Background syncs for changes nobody waits on (an instance became ready or died)."""
        while True:
            await self._sync_wanted.wait()
            self._sync_wanted.clear()
            await self._sync_now(BACKGROUND_SYNC_TIMEOUT)

    # -- small pieces -----------------------------------------------------------------------

    def _remove_working_copies(self, app: str) -> None:
        pattern = re.compile(instance_id_pattern(app))
        folder = self._config.instances_dir
        if folder.is_dir():
            for entry in folder.iterdir():
                if pattern.fullmatch(entry.name):
                    shutil.rmtree(entry, ignore_errors=True)

    # -- small pieces -----------------------------------------------------------------------

    def _new_instance(self, instance_id: str, spec: WorkloadSpec) -> Instance:
        return Instance(
            instance_id,
            spec,
            self._config,
            clock=self._clock,
            launcher=self._launcher,
            policy=self._policy,
            on_change=self._changed,
            issuer=self._credentials,
        )

    def _workload_keys(self) -> dict[str, str] | None:
        """Placeholders for the mesh variables instances get (for checking specs)."""
        if self._credentials is None:
            return None
        keys = {CREDENTIAL_KEY: "workload.jwt"}
        if self._config.mesh_url:
            keys[MESH_URL_KEY] = self._config.mesh_url
        return keys

    def _app(self, name: str) -> _App:
        app = self._apps.get(name)
        if app is None:
            raise AppNotRunning(name)
        return app

    def _apps_of(self, instance: Instance) -> _App:
        return self._apps.get(instance.spec.app) or _App(instance.spec.app)

    def _require_open(self) -> None:
        if self._is_closed:
            raise SupervisorError("the supervisor is closed")
        if not self._is_started:
            raise SupervisorError("the supervisor is not started (call start() first)")

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(_log_failure)
        return task


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("runtime background task failed", exc_info=task.exception())
