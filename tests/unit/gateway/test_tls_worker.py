"""``python -m courtyard.gateway --tls-cert --tls-key``: a worker process serving TLS, and one
readable line with a non-zero exit for a bad certificate. Synchronous on purpose: each test
starts a real process once rather than once per event loop."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import gateway_testkit as kit
import httpx

from courtyard.gateway._tls import ensure_dev_certificate


def _gateway(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "courtyard.gateway", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "COURTYARD_LOG_LEVEL": "WARNING"},
    )


def test_worker_serves_tls_with_the_given_pair(tmp_path: Path) -> None:
    cert, key = ensure_dev_certificate(tmp_path / "tls")
    snapshot = tmp_path / "snapshot.json"
    snapshot.write_text(json.dumps(kit.snapshot(1, [kit.route()], {})))
    # Bound with SO_REUSEPORT and never listening: holds a port the worker joins (socket(7)).
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind(("127.0.0.1", 0))
    port = holder.getsockname()[1]
    process = _gateway(
        "--listen",
        f"127.0.0.1:{port}",
        "--snapshot",
        str(snapshot),
        "--tls-cert",
        str(cert),
        f"--tls-key={key}",
    )
    try:
        context = ssl.create_default_context(cafile=str(cert))
        with httpx.Client(verify=context) as client:
            deadline = time.monotonic() + 15
            while True:
                try:
                    response = client.get(f"https://127.0.0.1:{port}/readyz")
                    break
                except httpx.ConnectError:
                    assert process.poll() is None, process.stderr and process.stderr.read()
                    assert time.monotonic() < deadline, "the worker did not start"
                    time.sleep(0.05)
            assert response.status_code == 200
            assert client.get(f"https://127.0.0.1:{port}/healthz").json() == {"status": "ok"}
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()
        holder.close()


def test_bad_pair_is_one_line_and_a_failed_exit(tmp_path: Path) -> None:
    cert, _ = ensure_dev_certificate(tmp_path / "a")
    _, other_key = ensure_dev_certificate(tmp_path / "b")
    for tls_args, expected in [
        (["--tls-cert", str(tmp_path / "missing.pem"), "--tls-key", str(other_key)], "cannot read"),
        (["--tls-cert", str(cert), "--tls-key", str(other_key)], "does not match"),
        (["--tls-cert", str(cert)], "give both or neither"),
    ]:
        process = _gateway("--listen", "127.0.0.1:0", "--snapshot", "unused.json", *tls_args)
        _, stderr = process.communicate(timeout=30)
        lines = stderr.decode().strip().splitlines()
        assert process.returncode == 2
        assert len(lines) == 1 and lines[0].startswith("courtyard.gateway: "), lines
        assert expected in lines[0]
