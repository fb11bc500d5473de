"""What the demo apps' tests share: a stand-in platform serving its JWKS and minting
``Courtyard-Identity`` assertions; start an app as a real process on a free loopback port with
the variables the platform gives it, wait until ``/healthz`` answers, and kill whatever is
still running at teardown."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from courtyard.contracts import IDENTITY_HEADER
from courtyard.sdk.testing import IdentityMinter

REVISION = "rev-test-1"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


class Platform:
    """What an app sees of the platform: ``{url}/oauth2/jwks`` over real loopback HTTP, and
    assertions signed with a key of that JWKS (``minter``, issuer = ``url``)."""

    def __init__(self) -> None:
        self.jwks: dict[str, Any] = {"keys": []}
        self.jwks_requests = 0
        platform = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != "/oauth2/jwks":
                    self.send_error(404)
                    return
                platform.jwks_requests += 1
                body = json.dumps(platform.jwks).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", "public, max-age=300")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.minter = IdentityMinter(self.url)
        self.jwks = self.minter.jwks()
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def headers(self, app: str, **claims: Any) -> dict[str, str]:
        """``{"Courtyard-Identity": ...}`` for a request to ``app``, as the gateway adds it."""
        return {IDENTITY_HEADER: self.minter.mint(aud=app, **claims)}

    def rotate(self) -> IdentityMinter:
        """Publish a new key next to the old one; returns a minter signing with it."""
        rotated = IdentityMinter(self.url)
        self.jwks = {"keys": self.jwks["keys"] + rotated.jwks()["keys"]}
        return rotated

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def platform() -> Iterator[Platform]:
    """A stand-in platform for the app under test to fetch its JWKS from."""
    serving = Platform()
    yield serving
    serving.close()


@dataclass
class RunningApp:
    """One app process and where it listens."""

    process: subprocess.Popen[bytes]
    port: int
    stdout: Path
    name: str

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


Launch = Callable[[list[str], Path, str], RunningApp]


@pytest.fixture
def launch(tmp_path: Path, platform: Platform) -> Iterator[Launch]:
    """``launch(command, app_dir, name)`` starts app ``name`` the way the platform would
    (``PORT``, ``COURTYARD_APP``, ``COURTYARD_REVISION`` and ``COURTYARD_PLATFORM_URL`` set)
    and returns once it is healthy."""
    started: list[RunningApp] = []

    def start(command: list[str], app_dir: Path, name: str) -> RunningApp:
        port = _free_port()
        stdout = tmp_path / f"stdout-{port}.log"
        env = {
            **os.environ,
            "PORT": str(port),
            "COURTYARD_APP": name,
            "COURTYARD_REVISION": REVISION,
            "COURTYARD_PLATFORM_URL": platform.url,
        }
        with stdout.open("wb") as out, (tmp_path / f"stderr-{port}.log").open("wb") as err:
            process = subprocess.Popen(command, cwd=app_dir, env=env, stdout=out, stderr=err)
        app = RunningApp(process, port, stdout, name)
        started.append(app)
        _wait_healthy(app)
        return app

    yield start
    for app in started:
        if app.process.poll() is None:
            app.process.kill()
            app.process.wait()


VISITOR = {"sub": "u_00000000000000d1", "email": "dana@example.com", "name": "Dana <Tester>"}


@pytest.fixture
def client(start_app: Callable[[], RunningApp], platform: Platform) -> Iterator[httpx.Client]:
    """An HTTP client for a freshly started app (each test module defines ``start_app``),
    sending the assertion the gateway would add for ``VISITOR``."""
    app = start_app()
    headers = platform.headers(app.name, **VISITOR)
    with httpx.Client(base_url=app.url, timeout=5.0, headers=headers) as http:
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
