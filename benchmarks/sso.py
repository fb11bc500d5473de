"""SSO benchmark: what signing in costs on the hot path, against baselines measured in the
same run.

One node (``courtyard up``) runs the benchmark upstream (benchmarks/_upstream.py) as two apps:
``bench-public`` (``access: {public: true}``) and ``bench-private`` (allowing only the bench
user). A user signs in through the portal's form and the session cookie rides every request:

- ``public``: the public app, no cookie (the baseline: routing and proxying only);
- ``public+session``: the public app with the cookie (session lookup, assertion signed);
- ``private+session``: the private app with the cookie (lookup, policy, assertion signed).

Target: private+session at >= 0.8 of public in requests per second.

Then the token endpoint: client-credentials grants per second at 8 concurrent connections
against ``GET /.well-known/openid-configuration`` through the same gateway as the same-run
baseline. Ory Hydra's published figure (~540 grants/s on 2 CPUs) is printed beside it as a
reference from elsewhere, not a measurement of this run.

Load comes from ``wrk`` when installed (GETs, with the cookie as a header), otherwise from
this file's own loader in a child process (keep-alive HTTP/1.1, one request in flight per
connection, Content-Length or chunked answers). Targets take turns for ``--rounds`` rounds of
``--seconds`` after a 1 s warm-up each; each figure is the median of its rounds. CPU is the
node's process tree (control plane and gateway workers, not the app instances) per request.
Results go to stdout and benchmarks/results/sso.json.

Usage: .venv/bin/python benchmarks/sso.py [--seconds 4] [--rounds 3] [--connections 50]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime
import html.parser
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import psutil
import uvloop

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "sso.json"
USER_EMAIL = "bench@example.com"
USER_PASSWORD = "bench-quartz-lantern-58"
TOKEN_CONCURRENCY = 8
HYDRA_REFERENCE = 540.0  # client-credentials grants/s, Ory Hydra's published 2-CPU figure
TARGET_RATIO = 0.8
APP_MARK = "sso_bench_app.py"  # app instances' command line, left out of the node's CPU

APP = textwrap.dedent(
    """\
    # Runs benchmarks/_upstream.py on $PORT (the platform gives it, the upstream takes argv).
    import os, runpy, sys
    sys.argv = ["_upstream.py", os.environ["PORT"]]
    runpy.run_path("_upstream.py", run_name="__main__")
    """
)


def manifest(name: str, access: str) -> str:
    return textwrap.dedent(
        f"""\
        apiVersion: courtyard.dev/v1alpha1
        kind: Application
        metadata:
          name: {name}
          owner: team-bench
          businessOwner: bench@example.com
        spec:
          run:
            command: ["python", "{APP_MARK}"]
            replicas: 1
            health: {{path: /small}}
            readyTimeout: 20s
          routes: [{{path: /apps/{name}/}}]
          access: {access}
        """
    )


@dataclass
class Measure:
    target: str
    requests: int
    seconds: float
    rps: float
    cpu_us_per_request: float
    p50_ms: float
    p99_ms: float
    errors: int


# -- the node ----------------------------------------------------------------------------------


class Node:
    """``courtyard up`` on free ports in a temporary data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("COURTYARD_")}
        self.log = (data_dir.parent / "node.log").open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                *("-m", "courtyard.cli", "up", "--data-dir", str(data_dir)),
                *("--port", "0", "--admin-port", "0", "--workers", "1"),
            ],
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the node exited with {self.process.returncode}")
            with contextlib.suppress(OSError, ValueError):
                self.url: str = json.loads((data_dir / "node.json").read_text())["url"]
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the node did not start within 60 s")
            time.sleep(0.1)
        self.token = (data_dir / "admin.token").read_text().strip()

    def api(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=60
        )

    def deploy(self, folder: Path) -> None:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "courtyard.cli",
                "deploy",
                str(folder),
                "--data-dir",
                str(self.data_dir),
            ],
            cwd=ROOT,
            env=self.env,
            check=True,
            capture_output=True,
            timeout=180,
        )

    def cpu_seconds(self) -> float:
        """utime + stime of the node and its descendants, app instances left out."""
        total = 0.0
        root = psutil.Process(self.process.pid)
        for proc in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                if any(APP_MARK in part for part in proc.cmdline()):
                    continue
                times = proc.cpu_times()
                total += times.user + times.system
        return total

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.log.close()


class _Forms(html.parser.HTMLParser):
    """The named fields of the form that holds a password field."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append((values.get("action", ""), {}))
        elif tag == "input" and self.forms and "name" in values:
            self.forms[-1][1][values["name"]] = values.get("value", "")


def sign_in(url: str) -> str:
    """Sign the bench user in through /login; the Cookie header value to send afterwards."""
    with httpx.Client(base_url=url, timeout=30, follow_redirects=False) as browser:
        page = browser.get("/login")
        page.raise_for_status()
        parser = _Forms()
        parser.feed(page.text)
        action, fields = next(f for f in parser.forms if "password" in f[1])
        answer = browser.post(
            urljoin(str(page.url), action or "/login"),
            data={**fields, "email": USER_EMAIL, "password": USER_PASSWORD},
            headers={"Origin": url},
        )
        if not answer.is_redirect:
            raise RuntimeError(f"sign-in failed: {answer.status_code} {answer.text[:300]}")
        return "; ".join(f"{name}={value}" for name, value in browser.cookies.items())


def prepare(node: Node, directory: Path) -> tuple[str, str, str]:
    """Apps, user and client; (cookie header, client id, client secret)."""
    for name, access in (
        ("bench-public", "{public: true}"),
        ("bench-private", f'{{allow: ["user:{USER_EMAIL}"]}}'),
    ):
        folder = directory / name
        folder.mkdir()
        shutil.copy(ROOT / "benchmarks" / "_upstream.py", folder / "_upstream.py")
        (folder / APP_MARK).write_text(APP)
        (folder / "courtyard.yaml").write_text(manifest(name, access))
        node.deploy(folder)
    with node.api() as api:
        api.post(
            "/api/v1/users",
            json={"email": USER_EMAIL, "name": "Bench User", "password": USER_PASSWORD},
        ).raise_for_status()
        registered = api.post(
            "/api/v1/clients",
            json={
                "app": "bench-public",
                "name": "bench service",
                "public": False,
                "redirectUris": [],
                "grantTypes": ["client_credentials"],
                "audience": ["courtyard"],
            },
        )
        registered.raise_for_status()
        client = registered.json()
    cookie = sign_in(node.url)
    probe = httpx.get(
        f"{node.url}/apps/bench-private/small", headers={"Cookie": cookie}, timeout=10
    )
    if probe.status_code != 200:
        raise RuntimeError(f"the private app refused the session: {probe.status_code}")
    return cookie, client["clientId"], client["clientSecret"]


# -- load ---------------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _millis(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if match is None:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def load(
    url: str,
    seconds: float,
    connections: int,
    *,
    headers: dict[str, str] | None = None,
    method: str = "GET",
    body: str = "",
) -> dict[str, float]:
    """requests, seconds, errors, p50_ms, p99_ms of one load run."""
    headers = headers or {}
    if shutil.which("wrk") and method == "GET":
        argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency"]
        for name, value in headers.items():
            argv += ["-H", f"{name}: {value}"]
        out = subprocess.run([*argv, url], capture_output=True, text=True, check=True).stdout
        done = re.search(r"(\d+) requests in ([\d.]+)(\w+),", out)
        p50 = re.search(r"^\s+50%\s+(\S+)", out, re.MULTILINE)
        p99 = re.search(r"^\s+99%\s+(\S+)", out, re.MULTILINE)
        assert done is not None and p50 is not None and p99 is not None, out
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        socket_errors = re.search(r"Socket errors: (.*)", out)
        errors = int(non2xx.group(1)) if non2xx else 0
        if socket_errors:
            errors += sum(int(n) for n in re.findall(r"\d+", socket_errors.group(1)))
        return {
            "requests": int(done.group(1)),
            "seconds": float(done.group(2)) * {"s": 1.0, "ms": 1e-3, "m": 60.0}[done.group(3)],
            "errors": errors,
            "p50_ms": _millis(p50.group(1)),
            "p99_ms": _millis(p99.group(1)),
        }
    job = {
        "url": url,
        "connections": connections,
        "seconds": seconds,
        "headers": headers,
        "method": method,
        "body": body,
    }
    out = subprocess.run(
        [sys.executable, __file__, "--load-job", json.dumps(job)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out)  # type: ignore[no-any-return]


async def _read_answer(reader: asyncio.StreamReader) -> bool:
    """Read one HTTP/1.1 response; True when its status is 2xx."""
    head = await reader.readuntil(b"\r\n\r\n")
    length, chunked = 0, False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:  # RFC 9112 §7.1
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return head.startswith(b"HTTP/1.1 2")


async def _worker(
    host: str, port: int, request: bytes, deadline: float, latencies: list[float]
) -> int:
    errors = 0
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            writer.write(request)
            if not await _read_answer(reader):
                errors += 1
            latencies.append(time.perf_counter() - started)
    finally:
        writer.close()
    return errors


async def _run_job(job: dict[str, Any]) -> dict[str, float]:
    parts = urlsplit(job["url"])
    body = job["body"].encode()
    head = [f"{job['method']} {parts.path or '/'} HTTP/1.1", f"Host: {parts.netloc}"]
    head += [f"{name}: {value}" for name, value in job["headers"].items()]
    if body:
        head.append(f"Content-Length: {len(body)}")
    request = ("\r\n".join(head) + "\r\n\r\n").encode() + body
    latencies: list[float] = []
    started = time.perf_counter()
    deadline = started + job["seconds"]
    errors = await asyncio.gather(
        *(
            _worker(parts.hostname or "127.0.0.1", parts.port or 80, request, deadline, latencies)
            for _ in range(job["connections"])
        )
    )
    elapsed = time.perf_counter() - started
    latencies.sort()
    count = len(latencies)
    return {
        "requests": count,
        "seconds": elapsed,
        "errors": sum(errors),
        "p50_ms": latencies[count // 2] * 1e3 if count else 0.0,
        "p99_ms": latencies[min(count - 1, int(count * 0.99))] * 1e3 if count else 0.0,
    }


# -- the run ------------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    url: str
    connections: int
    headers: dict[str, str]
    method: str = "GET"
    body: str = ""


def measure(node: Node, target: Target, seconds: float) -> Measure:
    before = node.cpu_seconds()
    result = load(
        target.url,
        seconds,
        target.connections,
        headers=target.headers,
        method=target.method,
        body=target.body,
    )
    used = node.cpu_seconds() - before
    requests = int(result["requests"])
    return Measure(
        target=target.name,
        requests=requests,
        seconds=result["seconds"],
        rps=requests / result["seconds"],
        cpu_us_per_request=used / max(requests, 1) * 1e6,
        p50_ms=result["p50_ms"],
        p99_ms=result["p99_ms"],
        errors=int(result["errors"]),
    )


def median(rounds: list[Measure]) -> Measure:
    """Each figure's median over the rounds (errors summed)."""
    return Measure(
        target=rounds[0].target,
        requests=int(statistics.median(m.requests for m in rounds)),
        seconds=statistics.median(m.seconds for m in rounds),
        rps=statistics.median(m.rps for m in rounds),
        cpu_us_per_request=statistics.median(m.cpu_us_per_request for m in rounds),
        p50_ms=statistics.median(m.p50_ms for m in rounds),
        p99_ms=statistics.median(m.p99_ms for m in rounds),
        errors=sum(m.errors for m in rounds),
    )


def turns(node: Node, targets: list[Target], seconds: float, rounds: int) -> list[Measure]:
    every: list[Measure] = []
    for target in targets:  # warm-up: pools filled, caches hot
        load(
            target.url,
            1.0,
            target.connections,
            headers=target.headers,
            method=target.method,
            body=target.body,
        )
    for _ in range(rounds):
        every.extend(measure(node, target, seconds) for target in targets)
    return every


def run(seconds: float, rounds: int, connections: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="courtyard-sso-bench-") as tmp:
        directory = Path(tmp)
        node = Node(directory / "data")
        try:
            cookie, client_id, client_secret = prepare(node, directory)
            session = {"Cookie": cookie}
            gateway = [
                Target("public", f"{node.url}/apps/bench-public/small", connections, {}),
                Target(
                    "public+session",
                    f"{node.url}/apps/bench-public/small",
                    connections,
                    session,
                ),
                Target(
                    "private+session",
                    f"{node.url}/apps/bench-private/small",
                    connections,
                    session,
                ),
            ]
            basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
            tokens = [
                Target(
                    "discovery",
                    f"{node.url}/.well-known/openid-configuration",
                    TOKEN_CONCURRENCY,
                    {},
                ),
                Target(
                    "client_credentials",
                    f"{node.url}/oauth2/token",
                    TOKEN_CONCURRENCY,
                    {
                        "Authorization": f"Basic {basic}",
                        "Content-Type": "application/x-www-form-urlencoded",
                    },
                    method="POST",
                    body="grant_type=client_credentials",
                ),
            ]
            every = turns(node, gateway, seconds, rounds) + turns(node, tokens, seconds, rounds)
        finally:
            node.stop()
    results = {
        name: median([m for m in every if m.target == name])
        for name in dict.fromkeys(m.target for m in every)
    }
    public = results["public"]
    grants = results["client_credentials"]
    ratios = {
        "private+session/public": {
            "rps": results["private+session"].rps / public.rps,
            "cpu_per_request": results["private+session"].cpu_us_per_request
            / public.cpu_us_per_request,
        },
        "public+session/public": {
            "rps": results["public+session"].rps / public.rps,
            "cpu_per_request": results["public+session"].cpu_us_per_request
            / public.cpu_us_per_request,
        },
        "client_credentials/discovery": {
            "rps": grants.rps / results["discovery"].rps,
            "cpu_per_request": grants.cpu_us_per_request / results["discovery"].cpu_us_per_request,
        },
    }
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "load": {
            "tool": "wrk" if shutil.which("wrk") else "benchmarks/sso.py --load-job",
            "connections": connections,
            "token_concurrency": TOKEN_CONCURRENCY,
            "seconds": seconds,
            "rounds": rounds,
        },
        "results": [asdict(m) for m in results.values()],
        "rounds": [asdict(m) for m in every],
        "ratios": ratios,
        "target": {"private+session/public rps": TARGET_RATIO},
        "reference": {
            "hydra_client_credentials_per_s": HYDRA_REFERENCE,
            "ours/hydra": grants.rps / HYDRA_REFERENCE,
        },
    }


def report(data: dict[str, Any]) -> str:
    lines = [
        f"{'target':20} {'req/s':>9} {'CPU µs/req':>11} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6}"
    ]
    for m in data["results"]:
        lines.append(
            f"{m['target']:20} {m['rps']:9.0f} {m['cpu_us_per_request']:11.1f} "
            f"{m['p50_ms']:7.2f} {m['p99_ms']:7.2f} {m['errors']:6d}"
        )
    lines.append("")
    for name, ratio in data["ratios"].items():
        lines.append(
            f"{name:30} req/s x{ratio['rps']:.2f}   CPU/request x{ratio['cpu_per_request']:.2f}"
        )
    sso = data["ratios"]["private+session/public"]["rps"]
    verdict = "meets" if sso >= TARGET_RATIO else "misses"
    lines.append(f"SSO private/public req/s x{sso:.2f} {verdict} the target x{TARGET_RATIO}")
    reference = data["reference"]
    lines.append(
        f"client_credentials x{reference['ours/hydra']:.2f} of Ory Hydra's published "
        f"~{HYDRA_REFERENCE:.0f}/s on 2 CPUs (a reference from elsewhere, not this run)"
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--load-job", help=argparse.SUPPRESS)  # the child-process loader
    args = parser.parse_args()
    if args.load_job:
        print(json.dumps(uvloop.run(_run_job(json.loads(args.load_job)))))
        return 0
    data = run(args.seconds, args.rounds, args.connections)
    print(report(data))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=2) + "\n")
    print(f"\nwritten to {RESULTS.relative_to(ROOT)}")
    failed = sum(m["errors"] for m in data["results"])
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
