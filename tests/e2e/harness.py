"""A whole node as a real child process, for tests that kill it, redeploy under load, etc.

The harness runs ``python -m courtyard.cli up`` on free ports with its own data directory and
talks to it only over HTTP, as a user would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]


def wait_for(condition: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except (httpx.HTTPError, OSError, ValueError, KeyError) as exc:
            last_error = exc
        time.sleep(0.05)
    raise AssertionError(
        f"timed out after {timeout} s waiting for {what} (last error: {last_error})"
    )


class NodeProcess:
    """One ``courtyard up`` child process."""

    def __init__(self, data_dir: Path, *, workers: int = 1, extra: list[str] | None = None) -> None:
        self.data_dir = data_dir
        self.workers = workers
        self.extra = extra or []
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.admin_url = ""
        self.output = data_dir.parent / f"{data_dir.name}-node.log"

    def start(self, timeout: float = 60.0) -> NodeProcess:
        info = self.data_dir / "node.json"
        if info.exists():
            info.unlink()
        env = {k: v for k, v in os.environ.items() if not k.startswith("COURTYARD_")}
        with self.output.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "courtyard.cli",
                    "up",
                    "--data-dir",
                    str(self.data_dir),
                    "--port",
                    "0",
                    "--admin-port",
                    "0",
                    "--workers",
                    str(self.workers),
                    *self.extra,
                ],
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        document = wait_for(self._read_info, timeout, "node.json")
        self.url, self.admin_url = document["url"], document["admin_url"]
        return self

    def _read_info(self) -> dict[str, Any] | None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"node exited with {self.process.returncode}:\n{self.log()}")
        try:
            return json.loads((self.data_dir / "node.json").read_text())  # type: ignore[no-any-return]
        except (OSError, ValueError):
            return None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def token(self) -> str:
        return (self.data_dir / "admin.token").read_text().strip()

    def api(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30
        )

    def cli(
        self, *args: str, check: bool = True, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("COURTYARD_")}
        result = subprocess.run(
            [sys.executable, "-m", "courtyard.cli", *args, "--data-dir", str(self.data_dir)],
            cwd=REPO,
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"courtyard {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
            )
        return result

    def log(self) -> str:
        return self.output.read_text(errors="replace") if self.output.exists() else ""

    def kill(self) -> None:
        """SIGKILL the node process only (as a crash would)."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        return self.process.returncode


HTTP_APP = textwrap.dedent(
    '''
    """A tiny app for platform tests: answers its VERSION, can be told to crash."""
    import http.server, json, os, sys

    VERSION = "{version}"

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            body = json.dumps({{"version": VERSION, "pid": os.getpid(),
                               "instance": os.environ.get("COURTYARD_INSTANCE"),
                               "path": self.path,
                               "prefix": self.headers.get("X-Forwarded-Prefix")}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
    server.daemon_threads = True
    print("listening", flush=True)
    server.serve_forever()
    '''
)


def write_app(
    folder: Path,
    name: str,
    *,
    version: str = "1",
    replicas: int = 1,
    command: str = '["python", "app.py"]',
    health: str = "{path: /healthz}",
    access: str = "{public: true}",
    extra_spec: str = "",
) -> Path:
    """A platform-test app folder with its manifest (public unless ``access`` says otherwise)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "app.py").write_text(HTTP_APP.format(version=version))
    (folder / "courtyard.yaml").write_text(
        textwrap.dedent(
            f"""\
            apiVersion: courtyard.dev/v1alpha1
            kind: Application
            metadata:
              name: {name}
              owner: team-test
              businessOwner: owner@example.com
            spec:
              run:
                command: {command}
                replicas: {replicas}
                health: {health}
                readyTimeout: 20s
                drainTimeout: 10s
              routes: [{{path: /apps/{name}/}}]
              access: {access}
            """
        )
        + extra_spec
    )
    return folder
