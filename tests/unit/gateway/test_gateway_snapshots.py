"""Snapshots: checked shape, swaps that drop no request, and drain reports."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import gateway_testkit as kit
import pytest

from courtyard.gateway import (
    Gateway,
    GatewayConfig,
    InvalidSnapshot,
    check_snapshot,
    load_snapshot,
)


def _config(**changes: Any) -> GatewayConfig:
    return replace(GatewayConfig(sweep_interval=0.02), **changes)


def _valid() -> dict[str, Any]:
    return json.loads(
        json.dumps(kit.snapshot(3, [kit.route()], {"echo": [kit.instance("e-1", 8001)]}))
    )


def test_check_snapshot_accepts_the_contract_shape() -> None:
    assert check_snapshot(_valid())["version"] == 3


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda s: s.update(version=-1), "version"),
        (lambda s: s.update(version=True), "version"),
        (lambda s: s.update(routes={}), "routes"),
        (lambda s: s["routes"][0].update(path="/apps/x"), "routes[0].path"),
        (lambda s: s["routes"][0].update(path="apps/x/"), "routes[0].path"),
        (lambda s: s["routes"][0].update(host=""), "routes[0].host"),
        (lambda s: s["routes"][0].update(strip_prefix="yes"), "routes[0].strip_prefix"),
        (lambda s: s["routes"][0].update(max_body_bytes=-1), "routes[0].max_body_bytes"),
        (lambda s: s["routes"][0].update(connect_timeout=0), "routes[0].connect_timeout"),
        (lambda s: s["routes"][0].update(response_timeout="1"), "routes[0].response_timeout"),
        (lambda s: s["routes"][0].pop("app"), "routes[0].app"),
        (lambda s: s.update(apps=[]), "apps"),
        (lambda s: s["apps"]["echo"].update(instances=None), "apps.echo"),
        (lambda s: s["apps"]["echo"]["instances"][0].update(port=70000), "port"),
        (lambda s: s["apps"]["echo"]["instances"][0].update(id=1), "instances[0]"),
    ],
)
def test_check_snapshot_names_the_bad_field(mutate: Any, where: str) -> None:
    snapshot = _valid()
    mutate(snapshot)
    with pytest.raises(InvalidSnapshot) as caught:
        check_snapshot(snapshot)
    assert where in str(caught.value)


def test_load_snapshot(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps(_valid()))
    assert load_snapshot(good)["version"] == 3
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InvalidSnapshot, match="not JSON"):
        load_snapshot(bad)
    with pytest.raises(InvalidSnapshot, match="cannot read"):
        load_snapshot(tmp_path / "missing.json")


async def test_swapping_instances_under_load_drops_nothing(
    gateway: Gateway, port: int, upstream: kit.Upstream
) -> None:
    green = await kit.Upstream("b").start()
    blue = upstream
    failures: list[str] = []
    served: dict[str, int] = {"a": 0, "b": 0}
    stop = asyncio.Event()

    async def client_loop(index: int) -> None:
        # Keep-alive clients, some pipelining two requests at a time.
        client = await kit.RawClient.connect(port)
        try:
            while not stop.is_set():
                burst = 2 if index % 2 else 1
                await client.send(b"GET /apps/echo/n HTTP/1.1\r\nHost: gw.test\r\n\r\n" * burst)
                for _ in range(burst):
                    response = await client.read_response()
                    if response.status != 200:
                        failures.append(f"{response.status} {response.body!r}")
                    else:
                        served[response.header("x-instance") or "?"] += 1
        finally:
            await client.aclose()

    async def fresh_connections() -> None:
        while not stop.is_set():
            response = await kit.request(port, "/apps/echo/fresh")
            if response.status != 200:
                failures.append(f"fresh {response.status} {response.body!r}")

    tasks = [asyncio.create_task(client_loop(i)) for i in range(4)]
    tasks.append(asyncio.create_task(fresh_connections()))
    try:
        version = 1
        for round_ in range(5):  # ends on green
            target = green if round_ % 2 == 0 else blue
            before = dict(served)
            version += 1
            gateway.apply(
                kit.snapshot(
                    version,
                    [kit.route(), kit.route("other", "/apps/other/")],
                    {"echo": [target.instance(revision=version)], "other": []},
                )
            )
            await kit.eventually(lambda t=target, b=before: served[t.name] >= b[t.name] + 20)
            await kit.eventually(lambda v=version: gateway.drained_version >= v)
        # Retire blue for good once drained: nothing may fail afterwards either.
        await blue.aclose()
        before = dict(served)
        await kit.eventually(lambda: served["b"] >= before["b"] + 50)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await green.aclose()
    assert failures == []
    assert served["a"] > 0 and served["b"] > 0


async def test_drained_after_in_flight_requests_to_removed_instances_finish(
    upstream: kit.Upstream,
) -> None:
    reports: list[int] = []
    gateway = Gateway(_config(), on_drained=reports.append)
    gateway.apply(kit.snapshot(1, [kit.route()], {"echo": [upstream.instance()]}))
    _, port = await gateway.start()
    other = await kit.Upstream("b").start()
    try:
        held = asyncio.create_task(kit.request(port, "/apps/echo/hold"))
        await kit.eventually(lambda: upstream.held == 1)
        await kit.eventually(lambda: 1 in reports)  # the first snapshot removed nothing
        # Version 2 moves the app to b: one request is still in flight on a.
        gateway.apply(kit.snapshot(2, [kit.route()], {"echo": [other.instance()]}))
        # Version 3 changes nothing about instances, but must wait for version 2 in order.
        gateway.apply(
            kit.snapshot(3, [kit.route(), kit.route("x", "/x/")], {"echo": [other.instance()]})
        )
        moved = await kit.request(port)
        assert moved.header("x-instance") == "b"
        assert reports == [1] and gateway.drained_version == 1
        upstream.release()
        assert (await held).header("x-instance") == "a"
        await kit.eventually(lambda: reports == [1, 2, 3])
        assert gateway.drained_version == 3
    finally:
        await gateway.aclose(0.5)
        await other.aclose()


async def test_drain_timeout_reports_anyway(upstream: kit.Upstream) -> None:
    reports: list[int] = []
    gateway = Gateway(_config(drain_timeout=0.2), on_drained=reports.append)
    gateway.apply(kit.snapshot(1, [kit.route()], {"echo": [upstream.instance()]}))
    _, port = await gateway.start()
    try:
        held = asyncio.create_task(kit.request(port, "/apps/echo/hold"))
        await kit.eventually(lambda: upstream.held == 1)
        gateway.apply(kit.snapshot(2, [kit.route()], {"echo": []}))
        await kit.eventually(lambda: 2 in reports, timeout=3)
        assert not held.done()
        upstream.release()
        assert (await held).status == 200
    finally:
        await gateway.aclose(0.5)


async def test_host_routes(gateway: Gateway, port: int, upstream: kit.Upstream) -> None:
    other = await kit.Upstream("b").start()
    try:
        gateway.apply(
            kit.snapshot(
                2,
                [
                    kit.route(),
                    kit.route("x", "/", host="x.apps.test", strip_prefix=False),
                    kit.route("x", "/apps/echo/", host="echo.apps.test", strip_prefix=False),
                ],
                {"echo": [upstream.instance()], "x": [other.instance()]},
            )
        )
        by_host = await kit.request(port, "/y", headers={"Host": "X.Apps.Test:8080"})
        assert by_host.header("x-instance") == "b"
        assert by_host.echoed().target == "/y"
        longer = await kit.request(port, "/apps/echo/", headers={"Host": "x.apps.test"})
        assert longer.header("x-instance") == "a"  # the longer host-less prefix wins
        same_length = await kit.request(port, "/apps/echo/z", headers={"Host": "echo.apps.test"})
        assert same_length.header("x-instance") == "b"  # equal length: the host route wins
        elsewhere = await kit.request(port, "/y", headers={"Host": "other.test"})
        assert elsewhere.status == 404
        absolute = await kit.request(port, "http://x.apps.test/y", headers={"Host": "other.test"})
        assert absolute.header("x-instance") == "b"
        assert absolute.echoed().header("host") == "x.apps.test"
    finally:
        await other.aclose()
