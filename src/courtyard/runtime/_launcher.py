"""Starting an instance's process so that it can always be found and stopped again.

Each process leads its own session and process group (setsid(2)), so one killpg(2) reaches
everything it forked; asks for SIGKILL when the node dies (prctl(2) PR_SET_PDEATHSIG), so even
``kill -9`` of the node leaves no orphan leader; and runs under RLIMIT_DATA (setrlimit(2)) and,
where delegated, a cgroup v2 (see ``_cgroups``). Exit is watched through a pidfd
(pidfd_open(2)) so the group can be killed while the leader is still an unreaped zombie, that
is, while its pid (the pgid) cannot have been reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import resource
import signal
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from courtyard.core import Clock, SystemClock
from courtyard.runtime._cgroups import CgroupSlot, CgroupV2
from courtyard.runtime._deadlines import within
from courtyard.runtime._records import start_ticks

log = logging.getLogger("courtyard.runtime")

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class OutputSink(Protocol):
    """Where a process's stdout and stderr go, chunk by chunk."""

    def write(self, data: bytes) -> None:
        """Take a chunk as read from the pipe."""
        ...

    def close(self) -> None:
        """The pipe closed (the process and everything holding its pipe is gone)."""
        ...


@dataclass(frozen=True)
class LaunchRequest:
    """One process to start."""

    instance_id: str
    argv: tuple[str, ...]
    cwd: Path
    env: Mapping[str, str]
    output: OutputSink
    memory_bytes: int | None = None
    cpu_millis: int | None = None


class ProcessHandle(Protocol):
    """A started process (the leader of its own process group)."""

    @property
    def pid(self) -> int: ...

    @property
    def pgid(self) -> int: ...

    @property
    def start_ticks(self) -> int:
        """Start time in clock ticks since boot (proc(5) ``stat`` field 22), for records."""
        ...

    @property
    def limits(self) -> str:
        """How the requested limits are enforced, or why some are not."""
        ...

    @property
    def returncode(self) -> int | None:
        """None while running; the exit code, or -N when killed by signal N."""
        ...

    async def wait(self) -> int:
        """Wait until the process exited; its returncode."""
        ...

    async def wait_closed(self) -> None:
        """Wait until the process exited and all of its output reached the sink."""
        ...

    def signal_group(self, sig: int) -> None:
        """Send ``sig`` to the whole process group (nothing once the process has exited)."""
        ...


class ProcessLauncher(Protocol):
    """Starts processes; the seam between the supervisor and the operating system."""

    async def launch(self, request: LaunchRequest) -> ProcessHandle:
        """Start one process; raises OSError (or SubprocessError) when it cannot start."""
        ...


class LocalProcessLauncher:
    """Child processes of this node (Linux)."""

    def __init__(
        self,
        *,
        cgroups: CgroupV2 | None = None,
        clock: Clock | None = None,
        output_grace: float = 2.0,
    ) -> None:
        """``cgroups``: where CPU and memory cgroups are made (default: /sys/fs/cgroup).

        ``output_grace``: how long to wait, after the process exited, for the rest of its
        output (a process outside its group may hold the pipe open).
        """
        self._cgroups = cgroups or CgroupV2()
        self._clock = clock or SystemClock()
        self._output_grace = output_grace
        self._prctl: Callable[..., int] | None = None
        self._looked_for_prctl = False

    async def launch(self, request: LaunchRequest) -> ProcessHandle:
        slot, limits = self._limits(request)
        setup = _child_setup(os.getpid(), _data_limit(request.memory_bytes), self._find_prctl())
        try:
            # Popen, not asyncio's subprocess API: the exit is watched through a pidfd (see
            # the module docstring). fork+exec returns at once; nothing here blocks for long.
            # preexec_fn runs only prctl and setrlimit, which take no lock a thread could hold.
            popen = subprocess.Popen(  # noqa: ASYNC220
                request.argv,
                cwd=request.cwd,
                env=dict(request.env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=setup,  # noqa: PLW1509
                close_fds=True,
            )
        except BaseException:
            if slot is not None:
                slot.remove()
            raise
        # From here a process exists: whatever fails, it must not outlive this call.
        process: _LocalProcess | None = None
        try:
            if slot is not None:
                problem = slot.join(popen.pid)
                if problem is not None:
                    limits = _limits_note(request, None, problem)
            process = _LocalProcess(popen, limits, slot, self._clock, self._output_grace)
            await process.attach(request.output)
        except BaseException:
            if process is not None:
                process.forget()
            with contextlib.suppress(OSError):
                os.killpg(popen.pid, signal.SIGKILL)
            popen.wait()
            if popen.stdout is not None:
                popen.stdout.close()
            if slot is not None:
                slot.remove()
            raise
        return process

    def _limits(self, request: LaunchRequest) -> tuple[CgroupSlot | None, str]:
        if request.memory_bytes is None and request.cpu_millis is None:
            return None, ""
        prepared = self._cgroups.prepare(
            request.instance_id, request.memory_bytes, request.cpu_millis
        )
        if isinstance(prepared, str):
            return None, _limits_note(request, None, prepared)
        return prepared, _limits_note(request, prepared, None)

    def _find_prctl(self) -> Callable[..., int] | None:
        if not self._looked_for_prctl:
            self._looked_for_prctl = True
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                prctl = libc.prctl
                prctl.argtypes = [
                    ctypes.c_int,
                    ctypes.c_ulong,
                    ctypes.c_ulong,
                    ctypes.c_ulong,
                    ctypes.c_ulong,
                ]
                prctl.restype = ctypes.c_int
                self._prctl = prctl
            except (OSError, AttributeError):
                log.warning("prctl(2) is not available: instances may outlive a killed node")
        return self._prctl


class _LocalProcess:
    """A running child: exit watched through a pidfd, output read from one pipe."""

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        limits: str,
        slot: CgroupSlot | None,
        clock: Clock,
        output_grace: float,
    ) -> None:
        self._popen = popen
        self._limits = limits
        self._slot = slot
        self._clock = clock
        self._output_grace = output_grace
        self._start_ticks = start_ticks(popen.pid)
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._exited: asyncio.Future[int] = loop.create_future()
        self._output_closed: asyncio.Future[None] = loop.create_future()
        self._transport: asyncio.ReadTransport | None = None
        self._finishing: asyncio.Task[None] | None = None
        self._pidfd = os.pidfd_open(popen.pid)
        self._is_watching = True
        loop.add_reader(self._pidfd, self._on_exit)

    def forget(self) -> None:
        """Stop watching (the launch failed and the caller reaps the process itself)."""
        if self._is_watching:
            self._is_watching = False
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)

    async def attach(self, sink: OutputSink) -> None:
        assert self._popen.stdout is not None
        transport, _ = await self._loop.connect_read_pipe(
            lambda: _OutputProtocol(sink, self._output_closed), self._popen.stdout
        )
        self._transport = transport

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def pgid(self) -> int:
        return self._popen.pid  # start_new_session: the leader's pid names its group

    @property
    def start_ticks(self) -> int:
        return self._start_ticks

    @property
    def limits(self) -> str:
        return self._limits

    @property
    def returncode(self) -> int | None:
        return self._exited.result() if self._exited.done() else None

    def signal_group(self, sig: int) -> None:
        if self._exited.done():
            return  # the leader is reaped: its pgid may already name someone else's group
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, sig)

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)

    async def wait_closed(self) -> None:
        await asyncio.shield(self._exited)
        assert self._finishing is not None
        await asyncio.shield(self._finishing)

    async def _finish(self) -> None:
        """After the exit: the rest of the output (bounded by ``output_grace``), the cgroup."""
        if not self._output_closed.done():
            try:
                await within(self._clock, self._output_grace, asyncio.shield(self._output_closed))
            except TimeoutError:
                # Something outside the group (a daemon that called setsid) holds the pipe.
                log.warning("pid %d exited but its output pipe stays open; closing it", self.pid)
                if self._transport is not None:
                    self._transport.close()
                    await self._output_closed
        if self._slot is not None:
            self._slot.remove()

    def _on_exit(self) -> None:
        self._is_watching = False
        self._loop.remove_reader(self._pidfd)
        # The leader is a zombie until reaped below, so its pid, and with it the pgid, cannot
        # be reused yet (POSIX Base Definitions, "Process ID Reuse"): kill what it left behind.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, signal.SIGKILL)
        code = self._popen.wait()
        os.close(self._pidfd)
        self._exited.set_result(code)
        self._finishing = asyncio.ensure_future(self._finish())


class _OutputProtocol(asyncio.Protocol):
    def __init__(self, sink: OutputSink, closed: asyncio.Future[None]) -> None:
        self._sink = sink
        self._closed = closed

    def data_received(self, data: bytes) -> None:
        try:
            self._sink.write(data)
        except Exception:  # a full disk must not stop the reading (the app would block)
            log.exception("cannot write instance output")

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            self._sink.close()
        except Exception:
            log.exception("cannot flush instance output")
        if not self._closed.done():
            self._closed.set_result(None)


def _child_setup(
    parent: int, data_limit: int | None, prctl: Callable[..., int] | None
) -> Callable[[], None]:
    """The function that runs in the child between fork and exec (keep it tiny)."""
    kill = ctypes.c_ulong(signal.SIGKILL)
    zero = ctypes.c_ulong(0)

    def setup() -> None:
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, kill, zero, zero, zero)
            # prctl(2): if the parent died before the call, no signal will ever come.
            if os.getppid() != parent:
                os.kill(os.getpid(), signal.SIGKILL)
        if data_limit is not None:
            resource.setrlimit(resource.RLIMIT_DATA, (data_limit, data_limit))

    return setup


def _data_limit(memory_bytes: int | None) -> int | None:
    """RLIMIT_DATA for a memory limit: the request, or the hard limit if that is lower."""
    if memory_bytes is None:
        return None
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    return memory_bytes if hard == resource.RLIM_INFINITY else min(memory_bytes, hard)


def _limits_note(request: LaunchRequest, slot: CgroupSlot | None, problem: str | None) -> str:
    notes: list[str] = []
    if request.memory_bytes is not None:
        mib = request.memory_bytes / (1024 * 1024)
        where = " and cgroup v2 memory.max" if slot is not None else " (per process)"
        notes.append(f"memory {mib:g} MiB by RLIMIT_DATA{where}")
    if request.cpu_millis is not None:
        if slot is not None:
            notes.append(f"CPU {request.cpu_millis}m by cgroup v2 cpu.max")
        else:
            notes.append(f"CPU limit not enforced ({problem})")
    elif problem is not None and request.memory_bytes is not None:
        notes.append(f"no memory cgroup ({problem})")
    return "; ".join(notes)
