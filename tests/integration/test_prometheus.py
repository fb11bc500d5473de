"""Issue 6: a real Prometheus server (Debian's package) scrapes the node's admin endpoint and
a PromQL query returns a demo app's request rate."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import NodeProcess, wait_for, write_app

pytestmark = pytest.mark.integration

PROMETHEUS = shutil.which("prometheus")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.skipif(PROMETHEUS is None, reason="Debian's prometheus package is not installed")
def test_prometheus_scrapes_and_answers_promql(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path / "node").start()
    server: subprocess.Popen[bytes] | None = None
    stack = contextlib.ExitStack()
    try:
        node.cli("deploy", str(write_app(tmp_path / "src" / "hello", "hello")))
        with httpx.Client(base_url=node.url, timeout=10) as client:
            wait_for(lambda: client.get("/apps/hello/").status_code == 200, 60, "hello to serve")
        admin = node.admin_url.removeprefix("http://")
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            f"  - job_name: courtyard\n    static_configs: [{{targets: ['{admin}']}}]\n"
        )
        port = free_port()
        assert PROMETHEUS is not None
        log = stack.enter_context((tmp_path / "prometheus.log").open("wb"))
        server = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        query = 'sum(rate(courtyard_gateway_requests_total{app="hello"}[15s]))'
        deadline = time.monotonic() + 60

        def rate() -> float:
            # Traffic keeps flowing while Prometheus takes its samples.
            with httpx.Client(base_url=node.url, timeout=10) as client:
                for _ in range(20):
                    assert client.get("/apps/hello/").status_code == 200
            answer = httpx.get(
                f"http://127.0.0.1:{port}/api/v1/query", params={"query": query}, timeout=5
            )
            result: list[dict[str, Any]] = answer.json()["data"]["result"]
            return float(result[0]["value"][1]) if result else 0.0

        value = wait_for(lambda: rate() > 0 and rate(), 60, "Prometheus to see the request rate")
        assert value > 0 and time.monotonic() < deadline
        targets = httpx.get(f"http://127.0.0.1:{port}/api/v1/targets", timeout=5).json()
        (target,) = targets["data"]["activeTargets"]
        assert target["health"] == "up"
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        stack.close()
        node.stop()
