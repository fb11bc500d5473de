"""Telemetry benchmark: the gateway's requests/s with metrics and tracing on versus off, in
one run, against the same upstream with the same load.

Two gateway workers run side by side, each on its own port, in front of one
``benchmarks/_upstream.py``:

- ``on``: the default: RED metrics by app and route, a span for every request (no client
  sends a traceparent, so every request starts a trace, and ``--trace-sample`` is 1: the most
  tracing the gateway does), the access log off;
- ``off``: the same worker with ``--no-telemetry``.

Both take their snapshot from a control channel, as under a node, and report to it once a
second (metrics; spans for ``on``): a sink in this process reads the channel and throws the
lines away, so the cost of building and sending the reports is the gateway's and counted, and
the control plane's cost of reading them is not (it is another process).

Load comes from ``wrk`` (1 thread, 50 keep-alive connections) or ``benchmarks/_load.py``,
exactly as in ``benchmarks/gateway.py``. After a warm-up, the two take turns for ROUNDS
rounds of SECONDS each, the order flipped every round so that drift on a shared machine
falls on both alike. Figures: requests/s per round and the median of each; the ratio is the
median of the per-round on/off ratios (each pair ran back to back). CPU time per request of
each worker is printed as well (utime+stime from /proc).

Exit status 1 when the ratio is below 0.9 (the issue's acceptance), or on errors.
Results go to stdout and benchmarks/results/telemetry.json.

``--metrics-only`` adds a third worker with ``--trace-sample 0`` (metrics, and spans of
errors only), to tell what metrics cost from what spans cost.

Usage: .venv/bin/python benchmarks/telemetry.py [--seconds 4] [--rounds 8] [--connections 50]
       [--metrics-only]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway import (
    PREFIX,
    ROOT,
    cpu_seconds,
    free_port,
    load,
    process,
    snapshot,
    wait_http,
)

RESULTS = ROOT / "benchmarks" / "results" / "telemetry.json"
PATH = "/small"
THRESHOLD = 0.9  # on/off requests per second must stay at or above this


class ControlSink:
    """The node's end of the control channel, reduced to what a worker needs: the snapshot
    after its hello, then every report read and dropped (span reports are counted)."""

    MARKER = b'"type":"span_rows"'

    def __init__(self, snapshot: dict[str, object]) -> None:
        self._line = json.dumps({"type": "snapshot", "snapshot": snapshot}).encode() + b"\n"
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        self.reports = 0  # span reports received, over all workers
        self.bytes = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        marker = self.MARKER
        tail = b""
        with conn:
            conn.sendall(self._line)
            while chunk := conn.recv(1 << 20):
                data = tail + chunk
                with self._lock:
                    self.reports += data.count(marker)
                    self.bytes += len(chunk)
                tail = data[-(len(marker) - 1) :]

    def close(self) -> None:
        self._server.close()


@contextlib.contextmanager
def gateway_worker(
    port: int, control: int, worker: int, extra: list[str]
) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "COURTYARD_CONTROL_TOKEN": "bench",
    }
    argv = [
        sys.executable,
        "-m",
        "courtyard.gateway",
        "--listen",
        f"127.0.0.1:{port}",
        "--control",
        f"127.0.0.1:{control}",
        "--worker-id",
        str(worker),
        *extra,
    ]
    with process(argv, env=env, stderr=subprocess.DEVNULL) as child:
        yield child


def measure(url: str, pid: int, seconds: float, connections: int) -> dict[str, float]:
    before = cpu_seconds(pid)
    result = load(url, seconds, connections)
    used = cpu_seconds(pid) - before
    requests = int(result["requests"])
    return {
        "requests": requests,
        "seconds": result["seconds"],
        "rps": requests / result["seconds"],
        "cpu_us_per_request": used / requests * 1e6 if requests else 0.0,
        "p99_ms": result["p99_ms"],
        "errors": int(result["errors"]),
    }


VARIANTS = {
    "on": [],
    "off": ["--no-telemetry"],
    "metrics": ["--trace-sample", "0"],  # metrics, and spans of errors only
}


def run(seconds: float, rounds: int, connections: int, names: list[str]) -> dict[str, object]:
    up_port = free_port()
    routed = snapshot(up_port)
    routed["apps"]["bench"]["access"] = {"public": True, "allow": []}  # type: ignore[index]
    sink = ControlSink(routed)
    measured: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(
                process([sys.executable, str(ROOT / "benchmarks" / "_upstream.py"), str(up_port)])
            )
            targets: dict[str, tuple[int, int]] = {}
            for number, name in enumerate(names, start=1):
                port = free_port()
                worker = stack.enter_context(
                    gateway_worker(port, sink.port, number, VARIANTS[name])
                )
                targets[name] = (port, worker.pid)
            for port, _ in targets.values():
                wait_http(port, PREFIX + PATH)
            for port, _ in targets.values():  # warm-up: pools filled, caches hot
                load(f"http://127.0.0.1:{port}{PREFIX}{PATH}", 1.0, connections)
            for number in range(rounds):
                # Turns flip every round: what drifts falls on every variant alike.
                for name in names if number % 2 == 0 else names[::-1]:
                    port, pid = targets[name]
                    url = f"http://127.0.0.1:{port}{PREFIX}{PATH}"
                    measured[name].append(measure(url, pid, seconds, connections))
    finally:
        sink.close()
    pairs = [
        on["rps"] / off["rps"]
        for on, off in zip(measured["on"], measured["off"], strict=True)
        if off["rps"]
    ]
    summary = {
        name: {
            "rps": statistics.median(m["rps"] for m in rounds_),
            "cpu_us_per_request": statistics.median(m["cpu_us_per_request"] for m in rounds_),
            "p99_ms": statistics.median(m["p99_ms"] for m in rounds_),
            "requests": sum(int(m["requests"]) for m in rounds_),
            "errors": sum(int(m["errors"]) for m in rounds_),
        }
        for name, rounds_ in measured.items()
    }
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "load": {
            "tool": "wrk" if shutil.which("wrk") else "benchmarks/_load.py",
            "threads": 1,
            "connections": connections,
            "seconds": seconds,
            "rounds": rounds,
        },
        "summary": summary,
        "ratio": statistics.median(pairs) if pairs else 0.0,
        "ratio_of_medians": summary["on"]["rps"] / summary["off"]["rps"]
        if summary["off"]["rps"]
        else 0.0,
        "cpu_ratio": summary["on"]["cpu_us_per_request"] / summary["off"]["cpu_us_per_request"]
        if summary["off"]["cpu_us_per_request"]
        else 0.0,
        "pair_ratios": pairs,
        "span_reports": sink.reports,
        "report_bytes": sink.bytes,
        "rounds": measured,
    }


def report(data: dict[str, object]) -> str:
    summary: dict[str, dict[str, float]] = data["summary"]  # type: ignore[assignment]
    lines = [f"{'telemetry':9} {'req/s':>9} {'CPU µs/req':>11} {'p99 ms':>7} {'errors':>6}"]
    for name, m in summary.items():
        lines.append(
            f"{name:9} {m['rps']:9.0f} {m['cpu_us_per_request']:11.1f} {m['p99_ms']:7.2f} "
            f"{int(m['errors']):6d}"
        )
    pairs = ", ".join(f"{r:.3f}" for r in data["pair_ratios"])  # type: ignore[attr-defined]
    lines += [
        "",
        f"req/s on/off: x{data['ratio']:.3f} (median of rounds: {pairs})",
        f"CPU per request on/off: x{data['cpu_ratio']:.3f}",
        f"span reports on the control channel: {data['span_reports']} "
        f"({data['report_bytes']} bytes of reports, metrics included)",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument(
        "--metrics-only",
        action="store_true",
        help="also measure a worker with --trace-sample 0 (metrics, error spans only)",
    )
    args = parser.parse_args()
    names = ["on", "off", "metrics"] if args.metrics_only else ["on", "off"]
    data = run(args.seconds, args.rounds, args.connections, names)
    print(report(data))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=2) + "\n")
    print(f"\nwritten to {RESULTS.relative_to(ROOT)}")
    summary: dict[str, dict[str, float]] = data["summary"]  # type: ignore[assignment]
    if summary["on"]["errors"] or summary["off"]["errors"]:
        print("FAILED: some requests failed")
        return 1
    ratio = float(data["ratio"])  # type: ignore[arg-type]
    if ratio < THRESHOLD:
        print(f"FAILED: req/s with telemetry is x{ratio:.3f} of without (needs >= {THRESHOLD})")
        return 1
    print(f"ok: req/s with telemetry stays at x{ratio:.3f} of without (>= {THRESHOLD})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
