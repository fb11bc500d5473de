"""Helpers of the runtime tests: small real apps, a recording traffic switch, polling.

The apps are stdlib Python scripts run with the platform's interpreter. Tests steer them
through files in a control folder (given in the app's env as CONTROL_DIR):

- ``crash``: exit with code 3 at start
- ``unhealthy``: answer /healthz with 503
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from courtyard.contracts import UpstreamInstance
from courtyard.runtime import RuntimeConfig, Supervisor, WorkloadSpec

APP = r"""
import http.server, json, os, resource, subprocess, sys

control = os.environ.get("CONTROL_DIR", ".")
instance = os.environ.get("COURTYARD_INSTANCE", "?")
if os.path.exists(os.path.join(control, "crash")):
    print("crashing on purpose", flush=True)
    sys.exit(3)
for n in range(int(os.environ.get("SPAM_LINES", "0"))):
    print(f"line {n:04d} " + "x" * 40)
if os.environ.get("GRANDCHILD"):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    with open(os.path.join(control, f"grandchild-{instance}.pid"), "w") as f:
        f.write(str(child.pid))
print(f"stderr says hello from {instance}", file=sys.stderr)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/healthz":
            sick = os.path.exists(os.path.join(control, "unhealthy"))
            self.answer(503 if sick else 200, {"ok": not sick})
        elif self.path == "/env":
            self.answer(200, dict(os.environ))
        elif self.path == "/argv":
            self.answer(200, sys.argv)
        elif self.path == "/rlimit":
            self.answer(200, list(resource.getrlimit(resource.RLIMIT_DATA)))
        else:
            self.answer(200, {"instance": instance})

    def answer(self, status, payload):
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        print(f"{instance} {fmt % args}", flush=True)


port = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else int(os.environ["PORT"])
print(f"{instance} listening on {port}", flush=True)
http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


@dataclass
class RecordingTraffic:
    """A TrafficSwitch that records the endpoints (and whatever ``watch`` returns) at each sync."""

    supervisor: Supervisor | None = None
    calls: list[dict[str, list[UpstreamInstance]]] = field(default_factory=list)
    watched: list[Any] = field(default_factory=list)
    watch: Callable[[], Any] | None = None

    async def sync(self) -> None:
        assert self.supervisor is not None
        self.calls.append(self.supervisor.endpoints())
        self.watched.append(self.watch() if self.watch is not None else None)
        await asyncio.sleep(0)

    def ids(self, app: str) -> list[list[str]]:
        """The instance ids of ``app`` at each call."""
        return [[i["id"] for i in call.get(app, [])] for call in self.calls]


async def wait_until(
    condition: Callable[[], bool], *, timeout: float = 10.0, what: str = "condition"
) -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


async def wait_for(
    condition: Callable[[], Awaitable[bool]], *, timeout: float = 10.0, what: str = "condition"
) -> None:
    """Like :func:`wait_until` for an async condition."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


def is_running(pid: int) -> bool:
    """True while ``pid`` runs (a zombie does not count)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def get_json(port: int, path: str = "/") -> Any:
    async with httpx.AsyncClient(timeout=5.0) as client:
        response = await client.get(f"http://127.0.0.1:{port}{path}")
        response.raise_for_status()
        return response.json()


def read_pid(path: Path) -> int:
    return int(path.read_text())


def write_app(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "app.py").write_text(APP)
    return folder


def make_config(data_dir: Path, **overrides: Any) -> RuntimeConfig:
    settings: dict[str, Any] = {
        "data_dir": data_dir,
        "node_id": "test-node",
        "platform_url": "http://127.0.0.1:9",
        "restart_backoff_base": 0.05,
        "restart_backoff_max": 0.3,
        "crash_loop_restarts": 3,
        "crash_loop_window": 30.0,
        "stop_grace": 2.0,
        "health_interval": 0.1,
        "log_max_bytes": 1024 * 1024,
        "log_backups": 2,
    }
    settings.update(overrides)
    return RuntimeConfig(**settings)


def http_spec(bundle: Path, control: Path, **overrides: Any) -> WorkloadSpec:
    settings: dict[str, Any] = {
        "app": "web",
        "revision": 1,
        "bundle": bundle,
        "command": ("python", "app.py", "${PORT}"),
        "env": {"CONTROL_DIR": str(control)},
        "health_timeout": 1.0,
        "failure_threshold": 2,
        "ready_timeout": 5.0,
        "drain_timeout": 2.0,
    }
    settings.update(overrides)
    return WorkloadSpec(**settings)


def no_children() -> bool:
    me = psutil.Process(os.getpid())
    return not [c for c in me.children(recursive=True) if is_running(c.pid)]


def env_of(payload: Any) -> dict[str, str]:
    assert isinstance(payload, dict)
    return {str(k): str(v) for k, v in payload.items()}
