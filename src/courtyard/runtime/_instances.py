"""One instance kept alive: start its process, wait until ready, watch it, restart it.

Each instance runs one keeper task. The outcome of its first start (ready, or why not) goes to
the rollout, which fails at once if the process died or was not ready in time. After that,
every exit or failed liveness leads to a restart after a backoff (see ``_backoff``), unless
the supervisor stops the instance. A keeper never touches other instances and never raises.
With a credential issuer, each process gets a fresh mesh credential file before it starts,
revoked once the process is gone (see ``_workload``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from courtyard.core import Clock
from courtyard.runtime._backoff import (
    RestartHistory,
    RestartPolicy,
    next_restart_delay,
    record_restart,
    settle,
)
from courtyard.runtime._config import RuntimeConfig
from courtyard.runtime._deadlines import within
from courtyard.runtime._environment import LOOPBACK, launch_plan
from courtyard.runtime._health import probe
from courtyard.runtime._launcher import LaunchRequest, ProcessHandle, ProcessLauncher
from courtyard.runtime._logs import LogSink, RotatingLogWriter, cri_prefix, tail_lines
from courtyard.runtime._models import InstanceState, InstanceStatus, WorkloadSpec
from courtyard.runtime._records import (
    InstanceRecord,
    boot_id,
    remove_record,
    start_ticks,
    write_record,
)
from courtyard.runtime._workload import CredentialIssuer, WorkloadCredential

log = logging.getLogger("courtyard.runtime")

READY_POLL = 0.1  # seconds between readiness checks (capped by the health interval)
KILL_WAIT = 5.0  # after SIGKILL, how long to wait for the exit to be seen before giving up


def describe_exit(code: int) -> str:
    """ "exited with code 3" or "was killed by SIGKILL" (subprocess's -N convention)."""
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def free_port(host: str = LOOPBACK) -> int:
    """A port nothing listens on right now (bind to port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class Instance:
    """One instance of one revision of an app, and the task that keeps it alive."""

    def __init__(
        self,
        instance_id: str,
        spec: WorkloadSpec,
        config: RuntimeConfig,
        *,
        clock: Clock,
        launcher: ProcessLauncher,
        policy: RestartPolicy,
        on_change: Callable[[Instance], None],
        issuer: CredentialIssuer | None = None,
    ) -> None:
        self.id = instance_id
        self.spec = spec
        self.state: InstanceState = "starting"
        self.port = 0
        self.pid: int | None = None
        self.restarts = 0
        self.started_at: float | None = None
        self.last_exit: int | None = None
        self.last_failure = ""  # why the last process ended, e.g. "exited with code 3"
        self.limits = ""
        self.history = RestartHistory()
        self.next_try_at: float | None = None  # monotonic time of the next start, in backoff
        # None once ready; otherwise why the first start failed (the rollout waits on it).
        self.first_outcome: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self.workdir = config.instances_dir / instance_id
        self.log_path = config.logs_dir / spec.app / f"{instance_id}.log"
        self._config = config
        self._clock = clock
        self._launcher = launcher
        self._policy = policy
        self._on_change = on_change
        self._writer: RotatingLogWriter | None = None
        self._handle: ProcessHandle | None = None
        self._exit: asyncio.Future[int] | None = None
        self._preparing: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        # The mesh credential of each process, when the supervisor has an issuer.
        self.credential = (
            WorkloadCredential(
                issuer,
                app=spec.app,
                instance=instance_id,
                workdir=self.workdir,
                clock=clock,
                mesh_url=config.mesh_url,
            )
            if issuer is not None
            else None
        )

    # -- what the supervisor calls ----------------------------------------------------------

    def start(self) -> None:
        """Start the keeper task."""
        self._task = asyncio.create_task(self._keep(), name=f"instance-{self.id}")

    @property
    def is_ready(self) -> bool:
        return self.state == "ready"

    async def drain(self) -> None:
        """Stop restarting and health-checking; the process keeps serving what it has."""
        await self._cancel_keeper()
        if self.state not in ("exited", "stopping"):
            self.state = "draining"

    async def stop(self, grace: float) -> None:
        """Stop for good: SIGTERM, SIGKILL after ``grace``; remove working copy and record."""
        await self._cancel_keeper()
        if self._exit is not None and not self._exit.done() and self._handle is not None:
            self.state = "stopping"
            await self._terminate(self._handle, self._exit, grace)
        if self._exit is not None and self._exit.done() and not self._exit.cancelled():
            self.last_exit = self._exit.result()
            if self._handle is not None:
                await self._handle.wait_closed()  # the log is complete before anyone reads it
        self.state = "exited"
        self.pid = None
        if not self.first_outcome.done():
            self.first_outcome.set_result("stopped before it was ready")
        if self._preparing is not None:
            await asyncio.wait({self._preparing})
        if self.credential is not None:
            await self.credential.close()  # revoked once the process is gone
        if self._writer is not None:
            self._writer.close()
        try:
            remove_record(self._config.records_dir, self.id)
            await asyncio.to_thread(shutil.rmtree, self.workdir, True)
        except OSError as exc:
            log.warning("instance %s: cannot clean up: %s", self.id, exc)

    def status(self) -> InstanceStatus:
        return InstanceStatus(
            id=self.id,
            app=self.spec.app,
            revision=self.spec.revision,
            pid=self.pid,
            port=self.port,
            state=self.state,
            restarts=self.restarts,
            started_at=self.started_at,
            last_exit=self.last_exit,
            limits=self.limits,
        )

    def log_tail(self, count: int = 20) -> list[str]:
        return tail_lines(self.log_path, count)

    # -- the keeper -------------------------------------------------------------------------

    async def _cancel_keeper(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            # asyncio.wait lets a cancellation of the caller through but not the keeper's.
            await asyncio.wait({self._task})

    async def _keep(self) -> None:
        try:
            await self._keep_alive()
        except Exception:  # the last line of defence: log, never let it escape the task
            log.exception("instance %s: supervision stopped by an error", self.id)
            self.state = "exited"
            if not self.first_outcome.done():
                self.first_outcome.set_result("supervision error (see the node's log)")

    async def _keep_alive(self) -> None:
        while True:
            try:
                reason = await self._run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug here must not end the instance's supervision
                log.exception("instance %s: supervision error", self.id)
                reason = f"supervision error: {exc}"
                if self._handle is not None and self._exit is not None and not self._exit.done():
                    await self._terminate(self._handle, self._exit, self._config.stop_grace)
            if self.credential is not None:
                # The process is gone: its credential goes with it (the next one gets a new one).
                await self.credential.close()
            if self._handle is not None and self._exit is not None and self._exit.done():
                await self._handle.wait_closed()  # its last words reach the log first
            self.last_failure = reason
            now = self._clock.monotonic()
            self.history = record_restart(self.history, now, self._policy)
            delay = next_restart_delay(self.history, self._policy)
            self.state = "backoff"
            self.next_try_at = now + delay
            if self.first_outcome.done():
                log.warning("instance %s %s; restarting in %.1f s", self.id, reason, delay)
            else:
                # The rollout decides: stop this instance, or keep it under restart policy.
                log.info("instance %s %s at its first start", self.id, reason)
                self.first_outcome.set_result(reason)
            await self._clock.sleep(delay)
            self.next_try_at = None
            self.restarts += 1

    async def _run_once(self) -> str:
        """Run one process until it ends or is killed; why it ended."""
        self.state = "starting"
        failed = (
            self._preparing is not None
            and self._preparing.done()
            and (self._preparing.cancelled() or self._preparing.exception() is not None)
        )
        if self._preparing is None or failed:  # made once, kept across restarts
            self._preparing = asyncio.ensure_future(asyncio.to_thread(self._make_workdir))
        try:
            await asyncio.shield(self._preparing)
        except Exception as exc:
            return f"could not prepare its working copy: {exc}"
        if self.credential is not None:
            try:
                await self.credential.open()
            except Exception as exc:
                self._note(f"courtyard: cannot get a workload credential: {exc}")
                return f"could not get its workload credential: {exc}"
        try:
            handle = await self._launch()
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            self.last_exit = 127
            self._note(f"courtyard: cannot start {self.spec.command[0]!r}: {exc}")
            return f"could not start: {exc}"
        self._exit = exit_ = asyncio.ensure_future(handle.wait())
        reason = await self._wait_ready(exit_)
        if reason is None:
            self.state = "ready"
            if not self.first_outcome.done():
                self.first_outcome.set_result(None)
            self._on_change(self)
            reason = await self._watch(exit_)
        was_serving = self.state in ("ready", "unhealthy")
        if not exit_.done():
            await self._terminate(handle, exit_, self._config.stop_grace)
        if exit_.done():
            self.last_exit = exit_.result()
        self.pid = None
        self.state = "exited"
        if was_serving:
            self._on_change(self)
        return reason

    async def _launch(self) -> ProcessHandle:
        port = free_port()
        plan = launch_plan(
            self.spec,
            self._config,
            instance_id=self.id,
            port=port,
            node_env=os.environ,
            python_dir=os.path.dirname(sys.executable),
            workload=self.credential.environment() if self.credential is not None else None,
        )
        if self._writer is None or self._writer.closed:
            self._writer = RotatingLogWriter(
                self.log_path,
                max_bytes=self._config.log_max_bytes,
                backups=self._config.log_backups,
            )
        request = LaunchRequest(
            instance_id=self.id,
            argv=plan.argv,
            cwd=self.workdir,
            env=plan.env,
            output=LogSink(self._writer),
            memory_bytes=self.spec.memory_bytes,
            cpu_millis=self.spec.cpu_millis,
        )
        handle = await self._launcher.launch(request)
        self._handle = handle
        self.port, self.pid, self.limits = port, handle.pid, handle.limits
        self.started_at = self._clock.time()
        record = InstanceRecord(
            id=self.id,
            app=self.spec.app,
            revision=self.spec.revision,
            pid=handle.pid,
            pgid=handle.pgid,
            start_ticks=handle.start_ticks,
            boot_id=boot_id(),
            node_id=self._config.node_id,
            started_at=self.started_at,
            node_pid=os.getpid(),
            node_start_ticks=start_ticks(os.getpid()),
        )
        try:
            write_record(self._config.records_dir, record)
        except OSError:
            # Without a record a node crash could orphan it: better not to run it at all.
            handle.signal_group(signal.SIGKILL)
            raise
        return handle

    async def _wait_ready(self, exit_: asyncio.Future[int]) -> str | None:
        """None once the instance answers its health check; else why it never did."""
        deadline = self._clock.monotonic() + self.spec.ready_timeout
        poll = min(READY_POLL, self._interval())
        while True:
            problem = await self._check()
            if exit_.done():
                return f"{describe_exit(exit_.result())} before it was ready"
            if problem is None:
                return None
            remaining = deadline - self._clock.monotonic()
            if remaining <= 0:
                return f"not ready within {self.spec.ready_timeout:g} s: {problem}"
            await self._pause(min(poll, remaining), exit_)

    async def _watch(self, exit_: asyncio.Future[int]) -> str:
        """Liveness checks until the process exits or fails too many in a row; why it ended."""
        failures = 0
        up_since = self._clock.monotonic()
        while True:
            await self._pause(self._interval(), exit_)
            if exit_.done():
                return describe_exit(exit_.result())
            problem = await self._check()
            if exit_.done():
                return describe_exit(exit_.result())
            self.history = settle(self.history, self._clock.monotonic(), up_since, self._policy)
            if problem is None:
                failures = 0
                if self.state == "unhealthy":
                    self.state = "ready"
                    self._on_change(self)
                continue
            failures += 1
            log.info(
                "instance %s failed a health check (%d in a row): %s", self.id, failures, problem
            )
            if failures >= self.spec.failure_threshold:
                return f"failed {failures} health checks in a row ({problem})"
            if self.state == "ready":
                self.state = "unhealthy"
                self._on_change(self)

    async def _terminate(
        self, handle: ProcessHandle, exit_: asyncio.Future[int], grace: float
    ) -> None:
        """SIGTERM the group, SIGKILL it after ``grace`` seconds (kill(2), killpg(2))."""
        handle.signal_group(signal.SIGTERM)
        try:
            await within(self._clock, grace, asyncio.shield(exit_))
            return
        except TimeoutError:
            log.warning("instance %s did not stop within %g s; killing it", self.id, grace)
        handle.signal_group(signal.SIGKILL)
        try:
            await within(self._clock, KILL_WAIT, asyncio.shield(exit_))
        except TimeoutError:
            log.error("instance %s (pid %d) survives SIGKILL", self.id, handle.pid)

    async def _pause(self, seconds: float, exit_: asyncio.Future[int]) -> None:
        """Sleep ``seconds`` of clock time, or less if the process exits meanwhile."""
        timer = asyncio.ensure_future(self._clock.sleep(seconds))
        waiting: set[asyncio.Future[Any]] = {timer, exit_}
        try:
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()

    async def _check(self) -> str | None:
        return await probe(
            LOOPBACK,
            self.port,
            self.spec.health_path,
            timeout=self.spec.health_timeout,
            clock=self._clock,
        )

    def _interval(self) -> float:
        return self.spec.health_interval or self._config.health_interval

    def _make_workdir(self) -> None:
        if self.workdir.exists():
            shutil.rmtree(self.workdir)
        self.workdir.parent.mkdir(parents=True, exist_ok=True)
        if self.spec.bundle is not None:
            shutil.copytree(self.spec.bundle, self.workdir, symlinks=True)
        else:
            self.workdir.mkdir()

    def _note(self, line: str) -> None:
        """Write a line of the supervisor's own into the instance log."""
        try:
            if self._writer is None or self._writer.closed:
                self._writer = RotatingLogWriter(
                    self.log_path,
                    max_bytes=self._config.log_max_bytes,
                    backups=self._config.log_backups,
                )
            stamp = cri_prefix(time.time(), b"stderr")
            self._writer.write_lines([stamp + b"F " + line.encode() + b"\n"])
        except OSError:
            log.exception("instance %s: cannot write its log", self.id)
