"""Gateway benchmark: CPU time per request and throughput of the proxy, against baselines
measured in the same run.

For a ~100-byte and a 16 KiB response it loads, in turn:

- ``direct``: the upstream itself (a lean uvloop server in its own process);
- ``gateway``: one ``python -m courtyard.gateway --snapshot`` worker in front of it;
- ``gateway+log``: the same with ``--access-log`` to a file (what the access log costs);
- ``nginx``: nginx (one process, upstream keepalive, the same forwarded headers), if
  ``/usr/sbin/nginx`` exists.

Load comes from ``wrk`` (1 thread, 50 keep-alive connections), or from
``benchmarks/_load.py`` when wrk is missing. CPU time is utime+stime of the measured process
from /proc/<pid>/stat, before and after, divided by the requests completed (for ``direct``
it is the upstream's own). The targets take turns for three rounds of 4 s after a 1 s
warm-up each, and each figure is the median of its rounds: on a small shared machine one
round alone is noisy. Results go to stdout and benchmarks/results/gateway.json.

Usage: .venv/bin/python benchmarks/gateway.py [--seconds 4] [--rounds 3] [--connections 50]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "gateway.json"
NGINX = "/usr/sbin/nginx"
SIZES = {"small": "/small", "large": "/large"}
PREFIX = "/apps/bench"
TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Measure:
    target: str
    size: str
    requests: int
    seconds: float
    rps: float
    cpu_us_per_request: float
    p50_ms: float
    p99_ms: float
    errors: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of proc(5); index 11 and 12 after the comm.
    return (int(fields[11]) + int(fields[12])) / TICK


def wait_http(port: int, path: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
                if sock.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"nothing answers 200 on port {port}{path}")


@contextlib.contextmanager
def process(argv: list[str], **kwargs: object) -> Iterator[subprocess.Popen[bytes]]:
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, **kwargs)  # type: ignore[call-overload]
    try:
        yield child
    finally:
        child.terminate()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _millis(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if match is None:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def load(url: str, seconds: float, connections: int) -> dict[str, float]:
    """Run the load generator; requests, seconds, errors, p50_ms, p99_ms."""
    if shutil.which("wrk"):
        out = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        done = re.search(r"(\d+) requests in ([\d.]+)(\w+),", out)
        assert done is not None, out
        scale = {"s": 1.0, "ms": 1e-3, "m": 60.0}[done.group(3)]
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        socket_errors = re.search(r"Socket errors: (.*)", out)
        errors = int(non2xx.group(1)) if non2xx else 0
        if socket_errors:
            errors += sum(int(n) for n in re.findall(r"\d+", socket_errors.group(1)))
        p50 = re.search(r"^\s+50%\s+(\S+)", out, re.MULTILINE)
        p99 = re.search(r"^\s+99%\s+(\S+)", out, re.MULTILINE)
        assert p50 is not None and p99 is not None, out
        return {
            "requests": int(done.group(1)),
            "seconds": float(done.group(2)) * scale,
            "errors": errors,
            "p50_ms": _millis(p50.group(1)),
            "p99_ms": _millis(p99.group(1)),
        }
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "_load.py"),
            url,
            str(connections),
            str(seconds),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    data = json.loads(out)
    return {
        "requests": data["requests"],
        "seconds": data["seconds"],
        "errors": data["errors"],
        "p50_ms": data["p50"] * 1e3,
        "p99_ms": data["p99"] * 1e3,
    }


def measure(
    target: str, size: str, url: str, pid: int, seconds: float, connections: int
) -> Measure:
    before = cpu_seconds(pid)
    result = load(url, seconds, connections)
    used = cpu_seconds(pid) - before
    requests = int(result["requests"])
    return Measure(
        target=target,
        size=size,
        requests=requests,
        seconds=result["seconds"],
        rps=requests / result["seconds"],
        cpu_us_per_request=used / requests * 1e6,
        p50_ms=result["p50_ms"],
        p99_ms=result["p99_ms"],
        errors=int(result["errors"]),
    )


def nginx_config(directory: Path, port: int, upstream: int) -> Path:
    user = "user root;\n" if os.geteuid() == 0 else ""
    text = f"""{user}daemon off;
master_process off;
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {directory}/body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    upstream bench {{ server 127.0.0.1:{upstream}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port};
        location {PREFIX}/ {{
            proxy_pass http://bench/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header X-Forwarded-Prefix {PREFIX};
            proxy_set_header X-Request-Id $request_id;
        }}
    }}
}}
"""
    path = directory / "nginx.conf"
    path.write_text(text)
    return path


def snapshot(upstream: int) -> dict[str, object]:
    return {
        "version": 1,
        "routes": [
            {
                "app": "bench",
                "path": f"{PREFIX}/",
                "host": None,
                "strip_prefix": True,
                "max_body_bytes": 1 << 20,
                "connect_timeout": 1.0,
                "response_timeout": 30.0,
            }
        ],
        "apps": {
            "bench": {
                "name": "bench",
                "instances": [
                    {"id": "bench-1", "host": "127.0.0.1", "port": upstream, "revision": 1}
                ],
            }
        },
    }


def median(rounds: list[Measure]) -> Measure:
    """The round with the median CPU per request (its other figures come along)."""
    ordered = sorted(rounds, key=lambda m: m.cpu_us_per_request)
    chosen = ordered[len(ordered) // 2]
    return Measure(
        target=chosen.target,
        size=chosen.size,
        requests=chosen.requests,
        seconds=chosen.seconds,
        rps=sorted(m.rps for m in rounds)[len(rounds) // 2],
        cpu_us_per_request=chosen.cpu_us_per_request,
        p50_ms=sorted(m.p50_ms for m in rounds)[len(rounds) // 2],
        p99_ms=sorted(m.p99_ms for m in rounds)[len(rounds) // 2],
        errors=sum(m.errors for m in rounds),
    )


def run(seconds: float, rounds: int, connections: int) -> dict[str, object]:
    results: list[Measure] = []
    every: list[Measure] = []
    skipped: list[str] = []
    with tempfile.TemporaryDirectory(prefix="courtyard-bench-") as tmp:
        directory = Path(tmp)
        os.chmod(directory, 0o755)
        up_port, gw_port, log_port, ngx_port = free_port(), free_port(), free_port(), free_port()
        snapshot_file = directory / "snapshot.json"
        snapshot_file.write_text(json.dumps(snapshot(up_port)))
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        with contextlib.ExitStack() as stack:
            upstream = stack.enter_context(
                process([sys.executable, str(ROOT / "benchmarks" / "_upstream.py"), str(up_port)])
            )
            gateway = stack.enter_context(
                process(
                    [
                        sys.executable,
                        "-m",
                        "courtyard.gateway",
                        "--listen",
                        f"127.0.0.1:{gw_port}",
                        "--snapshot",
                        str(snapshot_file),
                    ],
                    env=env,
                    stderr=subprocess.DEVNULL,
                )
            )
            logging_gateway = stack.enter_context(
                process(
                    [
                        sys.executable,
                        "-m",
                        "courtyard.gateway",
                        "--listen",
                        f"127.0.0.1:{log_port}",
                        "--snapshot",
                        str(snapshot_file),
                        "--access-log",
                        str(directory / "access.log"),
                    ],
                    env=env,
                    stderr=subprocess.DEVNULL,
                )
            )
            targets: list[tuple[str, int, str, int]] = [
                ("direct", up_port, "", upstream.pid),
                ("gateway", gw_port, PREFIX, gateway.pid),
                ("gateway+log", log_port, PREFIX, logging_gateway.pid),
            ]
            if Path(NGINX).exists():
                nginx = stack.enter_context(
                    process([NGINX, "-c", str(nginx_config(directory, ngx_port, up_port))])
                )
                targets.append(("nginx", ngx_port, PREFIX, nginx.pid))
            else:
                skipped.append(f"nginx: {NGINX} is missing (apt-get install nginx)")
            for _, port, prefix, _ in targets:
                wait_http(port, prefix + "/small")
            for size, path in SIZES.items():
                for _, port, prefix, _ in targets:  # warm-up: pools filled, caches hot
                    load(f"http://127.0.0.1:{port}{prefix}{path}", 1.0, connections)
                for _ in range(rounds):
                    for target, port, prefix, pid in targets:
                        url = f"http://127.0.0.1:{port}{prefix}{path}"
                        every.append(measure(target, size, url, pid, seconds, connections))
                for target, *_ in targets:
                    results.append(
                        median([m for m in every if (m.target, m.size) == (target, size)])
                    )
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
        "results": [asdict(m) for m in results],
        "rounds": [asdict(m) for m in every],
        "ratios": ratios(results),
        "skipped": skipped,
    }


def ratios(results: list[Measure]) -> dict[str, dict[str, float]]:
    """gateway/direct and gateway/nginx for CPU per request and requests per second."""
    by = {(m.target, m.size): m for m in results}
    out: dict[str, dict[str, float]] = {}
    for size in SIZES:
        gateway = by.get(("gateway", size))
        if gateway is None:
            continue
        for base in ("direct", "nginx"):
            other = by.get((base, size))
            if other is None:
                continue
            out[f"gateway/{base} {size}"] = {
                "cpu_per_request": gateway.cpu_us_per_request / other.cpu_us_per_request,
                "rps": gateway.rps / other.rps,
            }
    return out


def report(data: dict[str, object]) -> str:
    lines = [
        f"{'size':6} {'target':11} {'req/s':>9} {'CPU µs/req':>11} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'errors':>6}"
    ]
    for m in data["results"]:  # type: ignore[attr-defined]
        lines.append(
            f"{m['size']:6} {m['target']:11} {m['rps']:9.0f} {m['cpu_us_per_request']:11.1f} "
            f"{m['p50_ms']:7.2f} {m['p99_ms']:7.2f} {m['errors']:6d}"
        )
    lines.append("")
    for name, ratio in data["ratios"].items():  # type: ignore[attr-defined]
        lines.append(
            f"{name:24} CPU/request x{ratio['cpu_per_request']:.2f}   req/s x{ratio['rps']:.2f}"
        )
    for reason in data["skipped"]:  # type: ignore[attr-defined]
        lines.append(f"skipped {reason}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args()
    data = run(args.seconds, args.rounds, args.connections)
    print(report(data))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=2) + "\n")
    print(f"\nwritten to {RESULTS.relative_to(ROOT)}")
    failed = sum(m["errors"] for m in data["results"])  # type: ignore[attr-defined]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
