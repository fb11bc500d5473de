"""Worker processes: ``python -m courtyard.gateway`` on a shared SO_REUSEPORT port, static
snapshots reloaded on SIGHUP, and the control channel."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import gateway_testkit as kit
import pytest

from courtyard.contracts import SpansMessage, WorkerMetrics
from courtyard.gateway import GatewayError
from courtyard.gateway._worker import parse_args
from courtyard.transport import ControlServer


def _reserve_port() -> socket.socket:
    # Bound with SO_REUSEPORT and never listening: it holds a port the workers can join and
    # takes no connections itself (socket(7)).
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind(("127.0.0.1", 0))
    return holder


@asynccontextmanager
async def _gateway_process(
    *args: str, env: dict[str, str] | None = None
) -> AsyncIterator[asyncio.subprocess.Process]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "courtyard.gateway",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
        start_new_session=True,  # one process group: the supervisor and its workers
    )
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.communicate()


async def _until_ready(port: int) -> None:
    async with asyncio.timeout(15):
        while True:
            try:
                if (await kit.request(port, "/readyz")).status == 200:
                    return
            except OSError:
                pass
            await asyncio.sleep(0.05)


async def test_two_workers_share_the_port_and_reload_on_sighup(
    tmp_path: Path, upstream: kit.Upstream
) -> None:
    holder = _reserve_port()
    port = holder.getsockname()[1]
    snapshot_file = tmp_path / "snapshot.json"
    snapshot_file.write_text(
        json.dumps(kit.snapshot(1, [kit.route()], {"echo": [upstream.instance()]}))
    )
    log_file = tmp_path / "access.log"
    try:
        async with _gateway_process(
            "--listen",
            f"127.0.0.1:{port}",
            "--snapshot",
            str(snapshot_file),
            "--workers",
            "2",
            "--access-log",
            str(log_file),
        ) as process:
            await _until_ready(port)
            # Each worker keeps its own upstream pool: two upstream connections mean both
            # workers answered.
            async with asyncio.timeout(15):
                while upstream.connections_made < 2:
                    response = await kit.request(port, "/apps/echo/n")
                    assert response.status == 200
            snapshot_file.write_text(
                json.dumps(
                    kit.snapshot(
                        2,
                        [kit.route(), kit.route("echo", "/v2/", strip_prefix=False)],
                        {"echo": [upstream.instance()]},
                    )
                )
            )
            process.send_signal(signal.SIGHUP)
            async with asyncio.timeout(15):
                hits = 0
                while hits < 20:  # enough fresh connections to reach both workers
                    response = await kit.request(port, "/v2/x")
                    hits = hits + 1 if response.status == 200 else 0
            process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(15):
                assert await process.wait() == 0
    finally:
        holder.close()
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert {line["path"] for line in lines} >= {"/apps/echo/n", "/v2/x", "/readyz"}


async def test_worker_follows_the_control_channel(upstream: kit.Upstream) -> None:
    received: list[WorkerMetrics] = []
    spans: list[SpansMessage] = []
    control = ControlServer(
        "s3cret", on_metrics=lambda _worker, m: received.append(m), on_spans=spans.append
    )
    control_host, control_port = await control.start()
    holder = _reserve_port()
    port = holder.getsockname()[1]
    try:
        async with _gateway_process(
            "--listen",
            f"127.0.0.1:{port}",
            "--control",
            f"{control_host}:{control_port}",
            "--worker-id",
            "7",
            env={"COURTYARD_CONTROL_TOKEN": "s3cret"},
        ) as process:
            await control.wait_workers(1, timeout=15)
            assert control.workers == [7]
            await control.publish(kit.snapshot(1, [kit.route()], {"echo": [upstream.instance()]}))
            await control.wait_workers(1, timeout=10)
            assert (await kit.request(port)).status == 200
            # A request in flight to an instance the next snapshot removes delays "drained".
            held = asyncio.create_task(kit.request(port, "/apps/echo/hold"))
            await kit.eventually(lambda: upstream.held == 1)
            await control.publish(kit.snapshot(2, [kit.route()], {"echo": []}))
            assert not await control.wait_drained(2, timeout=0.3)
            upstream.release()
            assert (await held).status == 200
            assert await control.wait_drained(2, timeout=10)
            assert (await kit.request(port)).status == 503
            await kit.eventually(
                lambda: (
                    bool(received) and received[-1]["requests"].get("echo|/apps/echo/|2xx") == 2
                ),
                timeout=10,
            )
            # A span per request (each began a trace), reported with the worker's number.
            await kit.eventually(lambda: sum(len(m["spans"]) for m in spans) == 3, timeout=10)
            assert {m["worker"] for m in spans} == {7}
            records = [record for m in spans for record in m["spans"]]
            assert {r["name"] for r in records} == {"GET /apps/echo/"}
            assert sorted(r["status"] for r in records) == [200, 200, 503]
            # The control plane goes away: the worker stops by itself.
            await control.aclose()
            async with asyncio.timeout(15):
                assert await process.wait() == 0
    finally:
        holder.close()
        await control.aclose()


async def test_worker_refuses_a_bad_snapshot_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": 1}')
    async with _gateway_process("--listen", "127.0.0.1:0", "--snapshot", str(bad)) as process:
        _, stderr = await asyncio.wait_for(process.communicate(), 15)
    assert process.returncode == 2
    assert b"snapshot routes: expected a list" in stderr


def test_telemetry_options_reach_the_worker_config() -> None:
    options, _ = parse_args(["--listen", "127.0.0.1:1", "--snapshot", "s.json"])
    assert options.config.telemetry and options.config.trace_sample == 1.0
    options, _ = parse_args(
        [
            "--listen",
            "127.0.0.1:1",
            "--snapshot",
            "s.json",
            "--no-telemetry",
            "--trace-sample",
            "0.25",
        ]
    )
    assert not options.config.telemetry and options.config.trace_sample == 0.25
    with pytest.raises(GatewayError, match="trace_sample"):
        parse_args(["--listen", "127.0.0.1:1", "--snapshot", "s.json", "--trace-sample", "2"])
