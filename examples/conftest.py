"""What the demo apps' tests share: start an app as a real process on a free loopback port,
wait until ``/healthz`` answers, and kill whatever is still running at teardown."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REVISION = "rev-test-1"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


@dataclass
class RunningApp:
    """One app process and where it listens."""

    process: subprocess.Popen[bytes]
    port: int
    stdout: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> int:
        """Send SIGTERM and return the exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=STOP_TIMEOUT)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(app: RunningApp) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if app.process.poll() is not None:
            pytest.fail(f"app exited with {app.process.returncode}: {app.stdout.read_text()}")
        try:
            if httpx.get(f"{app.url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)  # polling a real process; nothing to inject here
    pytest.fail(f"app not healthy within {START_TIMEOUT} s")


Launch = Callable[[list[str], Path], RunningApp]


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launch]:
    """``launch(command, app_dir)`` starts an app the way the platform would (``PORT`` and
    ``COURTYARD_REVISION`` set) and returns once it is healthy."""
    started: list[RunningApp] = []

    def start(command: list[str], app_dir: Path) -> RunningApp:
        port = _free_port()
        stdout = tmp_path / f"stdout-{port}.log"
        env = {**os.environ, "PORT": str(port), "COURTYARD_REVISION": REVISION}
        with stdout.open("wb") as out, (tmp_path / f"stderr-{port}.log").open("wb") as err:
            process = subprocess.Popen(command, cwd=app_dir, env=env, stdout=out, stderr=err)
        app = RunningApp(process, port, stdout)
        started.append(app)
        _wait_healthy(app)
        return app

    yield start
    for app in started:
        if app.process.poll() is None:
            app.process.kill()
            app.process.wait()


@pytest.fixture
def client(start_app: Callable[[], RunningApp]) -> Iterator[httpx.Client]:
    """An HTTP client for a freshly started app (each test module defines ``start_app``)."""
    app = start_app()
    with httpx.Client(base_url=app.url, timeout=5.0) as http:
        yield http


def _same_connection_gets(port: int, path: str, count: int = 3) -> list[bytes]:
    """GET ``path`` ``count`` times over one HTTP/1.1 connection; fails if it is not reused."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        bodies, sockets = [], []
        for _ in range(count):
            connection.request("GET", path)
            response = connection.getresponse()
            assert response.version == 11
            bodies.append(response.read())
            sockets.append(connection.sock)
        assert sockets[0] is not None
        assert all(sock is sockets[0] for sock in sockets)
        return bodies
    finally:
        connection.close()


@pytest.fixture
def same_connection_gets() -> Callable[..., list[bytes]]:
    """``same_connection_gets(port, path)``: the keep-alive check every demo app passes."""
    return _same_connection_gets
