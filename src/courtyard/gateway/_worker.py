"""A gateway worker process: its own SO_REUSEPORT sockets (the public port and, with
``--mesh-listen``, the loopback mesh listener), uvloop, and snapshots from the control channel
(or a static file), until SIGTERM or the control plane goes away.

``--workers N`` starts N such processes on the same port and waits for them.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field

from courtyard.contracts import CredentialsMessage, GatewaySnapshot
from courtyard.gateway._access import AccessGate
from courtyard.gateway._config import GatewayConfig, GatewayError
from courtyard.gateway._server import Gateway
from courtyard.gateway._snapshots import load_snapshot
from courtyard.transport import ChannelClosed, ControlClient, configure_logging

log = logging.getLogger("courtyard.gateway")

TOKEN_ENV = "COURTYARD_CONTROL_TOKEN"  # noqa: S105 (a variable name, not a secret)
_CHANNEL_GRACE = 5.0  # in-flight answers still get this long after the control plane left


@dataclass(frozen=True)
class WorkerOptions:
    """Everything a worker needs, parsed once from its command line and environment."""

    host: str
    port: int
    worker_id: int = 0
    mesh: tuple[str, int] | None = None  # the mesh listener (loopback only), or none
    control: tuple[str, int] | None = None
    snapshot: str | None = None
    token: str = ""
    config: GatewayConfig = field(default_factory=GatewayConfig)


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` as (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise GatewayError(f"expected HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    number = int(port)
    if number > 65535:
        raise GatewayError(f"port out of range in {text!r}")
    return host, number


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (the mesh never leaves the host)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m courtyard.gateway",
        description="Courtyard gateway worker: an HTTP/1.1 reverse proxy for the app fleet.",
    )
    parser.add_argument("--listen", required=True, help="HOST:PORT to accept clients on")
    parser.add_argument("--worker-id", type=int, default=0, help="this worker's number")
    parser.add_argument(
        "--mesh-listen",
        help="loopback HOST:PORT of the mesh listener (service-to-service calls; default: none)",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--control", help="HOST:PORT of the node's control channel")
    source.add_argument("--snapshot", help="a GatewaySnapshot JSON file (reloaded on SIGHUP)")
    parser.add_argument(
        "--access-log", help="access log file, '-' for standard output (default: none)"
    )
    parser.add_argument(
        "--no-telemetry",
        action="store_true",
        help="count no metrics and record no spans (to measure what they cost)",
    )
    parser.add_argument(
        "--trace-sample",
        type=float,
        default=1.0,
        help="share (0-1) of new traces recorded; a traceparent's sampled flag decides others",
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="start this many worker processes (default 1)"
    )
    return parser


def parse_args(argv: list[str]) -> tuple[WorkerOptions, int]:
    """Options of one worker and the number of workers asked for."""
    args = build_parser().parse_args(argv)
    host, port = parse_address(args.listen)
    control = parse_address(args.control) if args.control else None
    mesh = parse_address(args.mesh_listen) if args.mesh_listen else None
    if mesh is not None and not is_loopback(mesh[0]):
        raise GatewayError(f"--mesh-listen must be a loopback address, got {mesh[0]!r}")
    options = WorkerOptions(
        host=host,
        port=port,
        worker_id=args.worker_id,
        mesh=mesh,
        control=control,
        snapshot=args.snapshot,
        token=os.environ.get(TOKEN_ENV, ""),
        config=GatewayConfig(
            access_log=args.access_log,
            telemetry=not args.no_telemetry,
            trace_sample=args.trace_sample,
        ),
    )
    if args.workers < 1:
        raise GatewayError("--workers must be at least 1")
    return options, args.workers


def listen_socket(host: str, port: int, backlog: int) -> socket.socket:
    """A listening socket with SO_REUSEPORT, so that every worker binds the same port and the
    kernel spreads connections among them."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host, port), family=family, backlog=backlog, reuse_port=True)
    except OSError as exc:
        raise GatewayError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.setblocking(False)
    return sock


async def serve(
    options: WorkerOptions,
    sock: socket.socket | None = None,
    mesh_sock: socket.socket | None = None,
) -> int:
    """Run one worker until SIGTERM/SIGINT or the control channel closes; the exit status."""
    loop = asyncio.get_running_loop()
    client: ControlClient | None = None
    if options.control is not None:
        client = ControlClient(
            options.control[0], options.control[1], options.token, options.worker_id
        )
    gateway = Gateway(options.config, on_drained=client.drained if client else None)
    if options.snapshot is not None:
        gateway.apply(load_snapshot(options.snapshot))
    if sock is None:
        sock = listen_socket(options.host, options.port, options.config.backlog)
    await gateway.start(sock=sock)
    if mesh_sock is None and options.mesh is not None:
        mesh_sock = listen_socket(options.mesh[0], options.mesh[1], options.config.backlog)
    if mesh_sock is not None:
        await gateway.start_mesh(sock=mesh_sock)
    stop = asyncio.Event()

    def handle_sigterm() -> None:
        stop.set()

    def handle_sighup() -> None:
        if options.snapshot is None:
            return
        try:
            gateway.apply(load_snapshot(options.snapshot))
            log.info("worker %d: reloaded %s", options.worker_id, options.snapshot)
        except GatewayError as exc:
            log.error("worker %d: kept the old snapshot: %s", options.worker_id, exc)

    for signum, handler in (
        (signal.SIGTERM, handle_sigterm),
        (signal.SIGINT, handle_sigterm),
        (signal.SIGHUP, handle_sighup),
    ):
        loop.add_signal_handler(signum, handler)

    waiters: list[asyncio.Task[object]] = [loop.create_task(stop.wait())]
    reporter: asyncio.Task[None] | None = None
    grace = options.config.shutdown_grace
    if client is not None:
        try:
            await client.connect()
        except OSError as exc:
            log.error("worker %d: cannot reach the control channel: %s", options.worker_id, exc)
            await gateway.aclose(0)
            return 1

        async def on_snapshot(snapshot: GatewaySnapshot) -> None:
            try:
                gateway.apply(snapshot)
            except GatewayError as exc:
                log.error("worker %d: refused a snapshot: %s", options.worker_id, exc)

        gate = access_gate(gateway)

        def on_credentials(message: CredentialsMessage) -> None:
            gate.apply_credentials(message)

        waiters.append(loop.create_task(client.run(on_snapshot, on_credentials)))
        reporter = loop.create_task(_report(client, gateway, gate, options.worker_id))
    log.info("worker %d listening on %s:%d", options.worker_id, options.host, options.port)
    if options.mesh is not None:
        log.info("worker %d: mesh on %s:%d", options.worker_id, *options.mesh)
    done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    if waiters[0] not in done:
        grace = min(grace, _CHANNEL_GRACE)
        reason: object = "closed"
        for task in done:
            try:
                task.result()
            except ChannelClosed:
                pass
            except Exception as exc:  # a broken channel is a closed one
                reason = exc
        log.warning("worker %d: the control channel %s; stopping", options.worker_id, reason)
    for task in waiters:
        task.cancel()
    if reporter is not None:
        reporter.cancel()
    await asyncio.gather(*waiters, *([reporter] if reporter else []), return_exceptions=True)
    await gateway.aclose(grace)
    if client is not None:
        client.metrics(gateway.metrics())
        report_spans(client, gateway)
        report_usage(client, access_gate(gateway), options.worker_id)
        client.close()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.remove_signal_handler(signum)
    return 0


def access_gate(gateway: Gateway) -> AccessGate:
    """The access gate of a started gateway (credentials go in, usage comes out)."""
    return gateway.access


async def _report(client: ControlClient, gateway: Gateway, gate: AccessGate, worker: int) -> None:
    """Metrics every second, and usage when there is any (at most one message a second)."""
    while True:
        await asyncio.sleep(1.0)
        client.metrics(gateway.metrics())
        report_spans(client, gateway)
        report_usage(client, gate, worker)


def report_spans(client: ControlClient, gateway: Gateway) -> None:
    kinds, rows, count, dropped = gateway.take_span_rows()
    if count or dropped:
        client.span_rows(kinds, rows, dropped)


def report_usage(client: ControlClient, gate: AccessGate, worker: int) -> None:
    message, dropped = gate.usage.take(worker)
    if message is not None:
        client.usage(message)
    if dropped:
        log.warning(
            "worker %d: %d access denials over the report limit not reported", worker, dropped
        )


def run_worker(options: WorkerOptions) -> int:
    """Run one worker on uvloop in this process; returns its exit status."""
    import uvloop  # noqa: PLC0415 (only worker processes need it)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(serve(options))


def supervise(argv: list[str], workers: int) -> int:
    """Start ``workers`` worker processes sharing the port; forward signals; wait."""
    args = _without_workers(argv)
    children = [
        subprocess.Popen([sys.executable, "-m", "courtyard.gateway", *args, "--worker-id", str(i)])
        for i in range(workers)
    ]

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    return max(child.wait() for child in children)


def _without_workers(argv: list[str]) -> list[str]:
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("--workers", "--worker-id"):
            skip = True
            continue
        if arg.startswith(("--workers=", "--worker-id=")):
            continue
        kept.append(arg)
    return kept


def main(argv: list[str] | None = None) -> int:
    """The ``python -m courtyard.gateway`` entry point."""
    level = os.environ.get("COURTYARD_LOG_LEVEL", "INFO").upper()
    configure_logging("gateway", level=level)
    argv = sys.argv[1:] if argv is None else argv
    try:
        options, workers = parse_args(argv)
        if workers > 1:
            return supervise(argv, workers)
        return run_worker(options)
    except GatewayError as exc:
        print(f"courtyard.gateway: {exc}", file=sys.stderr)
        return 2
