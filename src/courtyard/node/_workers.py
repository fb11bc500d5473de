"""Gateway worker processes: started, watched and restarted by the node, dying with it; and
the TLS certificate they serve, checked (or generated for development) before they start.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

from courtyard.core import Clock
from courtyard.gateway._tls import ensure_dev_certificate, server_context
from courtyard.node._config import NodeConfig

log = logging.getLogger("courtyard.node")

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # prctl(2) PR_SET_PDEATHSIG: the kernel kills the worker when the node dies, even by SIGKILL.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class GatewayWorkers:
    """N ``python -m courtyard.gateway`` processes sharing the public port (SO_REUSEPORT)."""

    def __init__(
        self,
        *,
        count: int,
        listen: tuple[str, int],
        control: tuple[str, int],
        token: str,
        log_dir: Path,
        access_log: bool,
        tls: tuple[Path, Path] | None = None,
        mesh: tuple[str, int] | None = None,
        telemetry: bool = True,
        trace_sample: float = 1.0,
    ) -> None:
        self._count = count
        self._telemetry = telemetry
        self._trace_sample = trace_sample
        self._mesh = mesh  # the loopback mesh listener every worker also serves
        self._listen = listen
        self._control = control
        self._token = token
        self._log_dir = log_dir
        self._access_log = access_log
        self._tls = tls  # (certificate, key) files; None = plain HTTP
        self._processes: dict[int, asyncio.subprocess.Process] = {}
        self._watchers: list[asyncio.Task[None]] = []
        self._stopping = False
        self.restarts = 0

    def should_stop(self) -> bool:
        """True once :meth:`aclose` has begun (a method, so no stale narrowing across awaits)."""
        return self._stopping

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._processes.values()]

    async def start(self) -> None:
        self._log_dir.mkdir(parents=True, exist_ok=True)
        for worker in range(1, self._count + 1):
            await self._spawn(worker)
            self._watchers.append(asyncio.create_task(self._watch(worker), name=f"gw-{worker}"))

    async def _spawn(self, worker: int) -> None:
        argv = [
            sys.executable,
            "-m",
            "courtyard.gateway",
            "--listen",
            f"{self._listen[0]}:{self._listen[1]}",
            "--control",
            f"{self._control[0]}:{self._control[1]}",
            "--worker-id",
            str(worker),
        ]
        if self._access_log:
            argv += ["--access-log", str(self._log_dir / f"access-{worker}.log")]
        if self._tls is not None:
            argv += ["--tls-cert", str(self._tls[0]), "--tls-key", str(self._tls[1])]
        if self._mesh is not None:
            argv += ["--mesh-listen", f"{self._mesh[0]}:{self._mesh[1]}"]
        if not self._telemetry:
            argv.append("--no-telemetry")
        if self._trace_sample != 1.0:
            argv += ["--trace-sample", repr(self._trace_sample)]
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("COURTYARD_") or key == "COURTYARD_LOG_LEVEL"
        }
        env["COURTYARD_CONTROL_TOKEN"] = self._token
        output = (self._log_dir / f"worker-{worker}.log").open("ab")
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                env=env,
                preexec_fn=_die_with_parent,
            )
        finally:
            output.close()
        self._processes[worker] = process

    async def _watch(self, worker: int) -> None:
        delay = 0.2
        while not self.should_stop():
            process = self._processes[worker]
            code = await process.wait()
            if self.should_stop():  # aclose() ran while we waited
                return
            log.error("gateway worker %d exited with %s; restarting in %.1f s", worker, code, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
            self.restarts += 1
            with contextlib.suppress(OSError):
                await self._spawn(worker)

    async def aclose(self, grace: float = 10.0) -> None:
        """SIGTERM every worker (they finish in-flight requests), SIGKILL after ``grace``."""
        self._stopping = True
        for task in self._watchers:
            task.cancel()
        for process in self._processes.values():
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
        for process in self._processes.values():
            try:
                await asyncio.wait_for(process.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()


def gateway_tls(
    config: NodeConfig, data_dir: Path, *, clock: Clock | None = None
) -> tuple[Path, Path] | None:
    """The (certificate, key) files the gateway workers serve TLS with, or None for plain HTTP.

    A configured pair is loaded once here so that a bad one stops the node with one line
    (TlsInvalid) instead of crash-looping the workers. With ``tls_self_signed`` and no pair,
    a development certificate is made (or reused) in ``data_dir/tls/``.
    """
    if config.tls_cert is not None and config.tls_key is not None:
        cert, key = config.tls_cert.resolve(), config.tls_key.resolve()
        server_context(cert, key)
        return cert, key
    if not config.tls_self_signed:
        return None
    cert, key = ensure_dev_certificate(data_dir / "tls", _served_names(config), clock=clock)
    server_context(cert, key)
    return cert, key


def _served_names(config: NodeConfig) -> Iterable[str]:
    """Every name a client may dial the gateway by, for the development certificate."""
    yield config.host
    if config.domain:
        yield config.domain
        yield f"*.{config.domain}"  # host routing: <app>.<domain>
    if config.public_url:
        hostname = urlsplit(config.public_url).hostname
        if hostname:
            yield hostname
