"""The mesh's configuration: its snapshot shapes are checked like the rest, and a worker process
started with ``--mesh-listen`` serves the mesh on loopback only."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import gateway_testkit as kit
import pytest

from courtyard.gateway import GatewayError, InvalidSnapshot, check_snapshot
from courtyard.gateway._worker import parse_args

MESH = {"trust_domain": "courtyard.test", "events_app": "courtyard", "events_path": "/ev/"}
POLICY = {
    "consumes": [{"service": "b", "paths": ["/x/**"], "methods": ["GET"]}],
    "accepts": None,
    "publishes": ["a.done"],
    "subscribes": [{"topic": "b.done", "handler": "/events/b"}],
}


def _valid() -> dict[str, Any]:
    snapshot = json.loads(
        json.dumps(kit.snapshot(3, [kit.route()], {"echo": [kit.instance("e-1", 8001)]}))
    )
    snapshot["apps"]["echo"]["mesh"] = json.loads(json.dumps(POLICY))
    snapshot["mesh"] = dict(MESH)
    return snapshot


def test_mesh_policies_and_settings_are_accepted() -> None:
    checked = check_snapshot(_valid())
    assert checked["mesh"]["events_app"] == "courtyard"
    assert checked["apps"]["echo"]["mesh"]["accepts"] is None
    with_accepts = _valid()
    with_accepts["apps"]["echo"]["mesh"]["accepts"] = [
        {"caller": "*", "paths": ["/**"], "methods": ["*"]}
    ]
    assert check_snapshot(with_accepts)["apps"]["echo"]["mesh"]["accepts"] is not None


def _app(s: dict[str, Any]) -> dict[str, Any]:
    policy: dict[str, Any] = s["apps"]["echo"]["mesh"]
    return policy


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda s: s["apps"]["echo"].update(mesh=[]), "apps.echo.mesh"),
        (lambda s: _app(s).update(consumes={}), "apps.echo.mesh.consumes"),
        (lambda s: _app(s)["consumes"][0].pop("service"), "apps.echo.mesh.consumes[0]"),
        (lambda s: _app(s)["consumes"][0].update(paths=["x"]), "consumes[0].paths"),
        (lambda s: _app(s)["consumes"][0].update(methods="GET"), "consumes[0].methods"),
        (lambda s: _app(s).pop("accepts"), "apps.echo.mesh.accepts"),
        (lambda s: _app(s).update(accepts={}), "apps.echo.mesh.accepts"),
        (lambda s: _app(s).update(accepts=[{"paths": []}]), "accepts[0]"),
        (lambda s: _app(s).update(publishes=[1]), "apps.echo.mesh.publishes"),
        (lambda s: _app(s).update(subscribes=[{"topic": "t"}]), "subscribes[0].handler"),
        (lambda s: s.update(mesh="on"), "mesh"),
        (lambda s: s["mesh"].update(trust_domain=""), "mesh.trust_domain"),
        (lambda s: s["mesh"].update(events_app="a/b"), "mesh.events_app"),
        (lambda s: s["mesh"].update(events_path="/ev"), "mesh.events_path"),
    ],
)
def test_bad_mesh_shapes_are_refused(mutate: Any, where: str) -> None:
    snapshot = _valid()
    mutate(snapshot)
    with pytest.raises(InvalidSnapshot, match="snapshot .*" + where.replace("[", r"\[")):
        check_snapshot(snapshot)


def test_the_mesh_flag_takes_a_loopback_address_only() -> None:
    options, _ = parse_args(["--listen", "0.0.0.0:80", "--snapshot", "s.json"])
    assert options.mesh is None
    options, _ = parse_args(
        ["--listen", "0.0.0.0:80", "--snapshot", "s.json", "--mesh-listen", "127.0.0.1:7001"]
    )
    assert options.mesh == ("127.0.0.1", 7001)
    for host in ("[::1]", "localhost"):
        argv = ["--listen", "0.0.0.0:80", "--snapshot", "s", "--mesh-listen", f"{host}:7001"]
        assert parse_args(argv)[0].mesh is not None
    with pytest.raises(GatewayError, match="loopback"):
        parse_args(["--listen", "0.0.0.0:80", "--snapshot", "s", "--mesh-listen", "0.0.0.0:7001"])


def _reserve_port() -> socket.socket:
    # Bound with SO_REUSEPORT and never listening: it holds a port the worker can join and
    # takes no connections itself (socket(7)).
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind(("127.0.0.1", 0))
    return holder


async def test_a_worker_process_serves_the_mesh_on_its_own_port(
    tmp_path: Path, upstream: kit.Upstream
) -> None:
    snapshot = _valid()
    snapshot["apps"]["echo"]["instances"] = [upstream.instance()]
    path = tmp_path / "snapshot.json"
    path.write_text(json.dumps(snapshot))
    holders = [_reserve_port(), _reserve_port()]
    public, mesh = (holder.getsockname()[1] for holder in holders)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "courtyard.gateway",
        "--listen",
        f"127.0.0.1:{public}",
        "--mesh-listen",
        f"127.0.0.1:{mesh}",
        "--snapshot",
        str(path),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=dict(os.environ),
        start_new_session=True,
    )
    try:
        async with asyncio.timeout(15):
            while True:
                try:
                    if (await kit.request(mesh, "/readyz")).status == 200:
                        break
                except OSError:
                    pass
                await asyncio.sleep(0.05)
        # A static snapshot has no auth and no credential: the mesh cannot sign, so 503.
        assert (await kit.request(mesh, "/echo/x")).status == 503
        assert (await kit.request(public, "/apps/echo/x")).status == 200
        assert upstream.requests[0].target == "/x"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.communicate()
        for holder in holders:
            holder.close()
