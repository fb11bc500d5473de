"""Mesh benchmark: what a service-to-service call through the mesh costs, and how many events
the bus stores and delivers per second on SQLite, against baselines measured in the same run.

One node (``courtyard up``, one gateway worker) runs three apps:

- ``bench-target``: benchmarks/_upstream.py (fixed answers);
- ``bench-caller``: the same upstream, declaring ``consumes: bench-target`` and
  ``publishes: bench.tick``; its instance's workload credential (``workload.jwt``) is what the
  load generator presents to the mesh;
- ``bench-sink``: a minimal ASGI app (uvicorn) answering 204 to every POST, subscribing to
  ``bench.tick``.

Calls (wrk, or this repo's loader): ``direct`` = GET /small on the target instance's own port
(the baseline), ``mesh`` = the same request through ``{MESH}/bench-target/small`` with the
caller's credential (authentication, consumes/accepts policy, a signed Courtyard-Identity with
``act``, proxying). Each target gets a warm-up, then 3 rounds of 4 s; figures are medians.

Events: ``--events`` events are published through ``{MESH}/_events/bench.tick`` (8 at a time);
the figure is events published and delivered per second, from the first publish until the
last delivery is recorded in the database (each event is committed with its delivery row
before the publish is acknowledged, then pushed through the mesh to the sink). The baseline is
the same number of POSTs of the same envelope sent straight to the sink's port, 8 at a time.

Usage: .venv/bin/python benchmarks/mesh.py [--seconds 4] [--rounds 3] [--events 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sqlite3
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sso

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "mesh.json"
CONCURRENCY = 8

SINK = textwrap.dedent(
    """\
    # sso_bench_app.py marks app processes, which the node's CPU figure leaves out.
    import os
    import uvicorn

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        status = 200 if scope["path"] == "/healthz" else 204
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["PORT"]), log_level="warning",
                access_log=False)
    """
)


def upstream_manifest(name: str, extra: str) -> str:
    return sso.manifest(name, "{public: true}") + textwrap.indent(extra, "  ")


def deploy(node: sso.Node, directory: Path) -> None:
    for name, extra in (
        ("bench-target", ""),
        (
            "bench-caller",
            "consumes: [{service: bench-target, paths: ['/**'], methods: [GET]}]\n"
            "publishes: [bench.tick]\n",
        ),
    ):
        folder = directory / name
        folder.mkdir()
        shutil.copy(ROOT / "benchmarks" / "_upstream.py", folder / "_upstream.py")
        (folder / sso.APP_MARK).write_text(sso.APP)
        (folder / "courtyard.yaml").write_text(upstream_manifest(name, extra))
        node.deploy(folder)
    sink = directory / "bench-sink"
    sink.mkdir()
    (sink / sso.APP_MARK).write_text(SINK)
    manifest = sso.manifest("bench-sink", "{public: true}").replace(
        "health: {path: /small}", "health: {path: /healthz}"
    )
    manifest += "  subscribes: [{topic: bench.tick, handler: /events}]\n"
    (sink / "courtyard.yaml").write_text(manifest)
    node.deploy(sink)


def mesh_url(node: sso.Node) -> str:
    """The mesh listener's address, from a gateway worker's command line."""
    for proc in psutil.Process(node.process.pid).children(recursive=True):
        argv = proc.cmdline()
        if "--mesh-listen" in argv:
            return "http://" + argv[argv.index("--mesh-listen") + 1]
    raise RuntimeError("no gateway worker runs a mesh listener")


def instance_port(node: sso.Node, app: str) -> int:
    with node.api() as api:
        instances = api.get(f"/api/v1/apps/{app}/instances").json()
    return int(instances[0]["port"])


def credential(node: sso.Node, app: str) -> str:
    [path] = sorted((node.data_dir / "instances").glob(f"{app}-*/workload.jwt"))
    return path.read_text().strip()


async def _post_all(url: str, count: int, headers: dict[str, str], body: bytes) -> float:
    """POST ``count`` times, CONCURRENCY at a time; seconds taken. Fails on a non-2xx."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(count):
        queue.put_nowait(index)

    async def worker(client: httpx.AsyncClient) -> None:
        while True:
            try:
                queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            answer = await client.post(url, headers=headers, content=body)
            if answer.status_code >= 300:
                raise RuntimeError(f"{url} answered {answer.status_code}: {answer.text[:300]}")

    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(CONCURRENCY)))
        return time.perf_counter() - started


def delivered(database: Path) -> int:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10) as conn:
        row = conn.execute("SELECT count(*) FROM deliveries WHERE state = 'delivered'").fetchone()
    return int(row[0])


def events(node: sso.Node, mesh: str, token: str, count: int) -> dict[str, float]:
    body = json.dumps({"n": 1, "note": "bench"}).encode()
    database = node.data_dir / "courtyard.db"
    before = delivered(database)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    started = time.perf_counter()
    published = asyncio.run(_post_all(f"{mesh}/_events/bench.tick", count, headers, body))
    deadline = time.monotonic() + 300
    while delivered(database) < before + count:
        if time.monotonic() > deadline:
            raise RuntimeError("events were not all delivered within 300 s")
        time.sleep(0.05)
    total = time.perf_counter() - started
    envelope = json.dumps(
        {"specversion": "1.0", "id": "x", "source": "bench", "type": "bench.tick", "data": {}}
    ).encode()
    sink = f"http://127.0.0.1:{instance_port(node, 'bench-sink')}/events"
    direct = asyncio.run(
        _post_all(sink, count, {"Content-Type": "application/cloudevents+json"}, envelope)
    )
    return {
        "events": count,
        "published_seconds": published,
        "published_per_second": count / published,
        "delivered_per_second": count / total,
        "direct_posts_per_second": count / direct,
    }


def run(seconds: float, rounds: int, count: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="courtyard-mesh-bench-") as tmp:
        directory = Path(tmp)
        node = sso.Node(directory / "data")
        try:
            deploy(node, directory)
            mesh = mesh_url(node)
            token = credential(node, "bench-caller")
            probe = httpx.get(
                f"{mesh}/bench-target/small",
                headers={"Authorization": f"Bearer {token}"},
                timeout=10,
            )
            if probe.status_code != 200:
                raise RuntimeError(f"the mesh refused the call: {probe.status_code} {probe.text}")
            port = instance_port(node, "bench-target")
            targets = [
                sso.Target("direct", f"http://127.0.0.1:{port}/small", 50, {}),
                sso.Target(
                    "mesh",
                    f"{mesh}/bench-target/small",
                    50,
                    {"Authorization": f"Bearer {token}"},
                ),
            ]
            every = sso.turns(node, targets, seconds, rounds)
            results = [sso.median([m for m in every if m.target == t.name]) for t in targets]
            flow = events(node, mesh, token, count)
        finally:
            node.stop()
    by = {m.target: m for m in results}
    return {
        "results": [vars(m) for m in results],
        "ratios": {"mesh/direct": {"rps": by["mesh"].rps / by["direct"].rps}},
        "events": flow,
        "events_ratio": flow["delivered_per_second"] / flow["direct_posts_per_second"],
    }


def report(data: dict[str, Any]) -> str:
    lines = [f"{'target':10} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6}"]
    for m in data["results"]:
        lines.append(
            f"{m['target']:10} {m['rps']:9.0f} {m['p50_ms']:7.2f} {m['p99_ms']:7.2f} "
            f"{m['errors']:6d}"
        )
    lines.append(f"mesh/direct req/s x{data['ratios']['mesh/direct']['rps']:.2f}")
    flow = data["events"]
    lines.append(
        f"events: {flow['events']} published at {flow['published_per_second']:.0f}/s, "
        f"published+delivered {flow['delivered_per_second']:.0f}/s; "
        f"straight POSTs to the subscriber {flow['direct_posts_per_second']:.0f}/s "
        f"(x{data['events_ratio']:.2f})"
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--events", type=int, default=2000)
    args = parser.parse_args()
    data = run(args.seconds, args.rounds, args.events)
    print(report(data))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=2) + "\n")
    print(f"\nwritten to {RESULTS.relative_to(ROOT)}")
    return 1 if any(m["errors"] for m in data["results"]) else 0


if __name__ == "__main__":
    raise SystemExit(main())
