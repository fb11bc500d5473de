import asyncio
import json

import pytest

from courtyard.contracts import (
    CredentialsMessage,
    GatewaySnapshot,
    SpanRecord,
    SpansMessage,
    UsageMessage,
    WorkerMetrics,
)
from courtyard.transport import ChannelClosed, ControlClient, ControlServer, expand_span_rows


def snap(version: int) -> GatewaySnapshot:
    return {"version": version, "routes": [], "apps": {}, "auth": None}


async def test_worker_receives_snapshots_and_drained_is_awaited() -> None:
    metrics: list[tuple[int, WorkerMetrics]] = []
    server = ControlServer("s3cret", on_metrics=lambda w, m: metrics.append((w, m)))
    host, port = await server.start()
    await server.publish(snap(1))
    client = ControlClient(host, port, "s3cret", worker=1)
    await client.connect()
    seen: list[int] = []

    async def on_snapshot(snapshot: GatewaySnapshot) -> None:
        seen.append(snapshot["version"])

    runner = asyncio.create_task(client.run(on_snapshot))
    await server.wait_workers(1, timeout=5)
    assert seen == [1]
    await server.publish(snap(2))
    waiter = asyncio.create_task(server.wait_drained(2, timeout=5))
    await asyncio.sleep(0.05)
    assert not waiter.done()  # applied is not drained
    client.drained(2)
    assert await waiter is True
    assert seen == [1, 2]

    client.metrics({"requests": {"a|2xx": 3}, "latency": {}, "upstream_errors": {}, "in_flight": 0})
    for _ in range(100):
        if metrics:
            break
        await asyncio.sleep(0.01)
    assert metrics == [
        (1, {"requests": {"a|2xx": 3}, "latency": {}, "upstream_errors": {}, "in_flight": 0})
    ]

    await server.aclose()
    with pytest.raises(ChannelClosed):
        await asyncio.wait_for(runner, 5)


async def test_wrong_token_is_refused() -> None:
    server = ControlServer("right")
    host, port = await server.start()
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        json.dumps({"type": "hello", "token": "wrong", "worker": 1, "pid": 1}).encode() + b"\n"
    )
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed without a snapshot
    assert server.workers == []
    writer.close()
    await writer.wait_closed()
    await server.aclose()


async def test_drain_wait_ends_when_worker_leaves_and_times_out_otherwise() -> None:
    server = ControlServer("t")
    host, port = await server.start()
    client = ControlClient(host, port, "t", worker=7)
    await client.connect()

    async def ignore(_: GatewaySnapshot) -> None:
        return None

    runner = asyncio.create_task(client.run(ignore))
    await server.wait_workers(1, timeout=5)
    await server.publish(snap(3))
    assert await server.wait_drained(3, timeout=0.05) is False
    waiter = asyncio.create_task(server.wait_drained(3, timeout=5))
    client.close()
    assert await waiter is True  # a worker that is gone holds no requests
    with pytest.raises((ChannelClosed, ConnectionError)):
        await runner
    await server.aclose()


def _credentials(full: bool, keys: list[str]) -> CredentialsMessage:
    return CredentialsMessage(
        type="credentials", seq=0, full=full, upsert=[], revoke=keys, revoked_jti=["j"]
    )


async def test_credentials_follow_the_first_snapshot_and_changes_reach_every_worker() -> None:
    usage: list[UsageMessage] = []
    server = ControlServer(
        "t", on_usage=usage.append, credentials_source=lambda: _credentials(True, ["full"])
    )
    host, port = await server.start()
    await server.publish(snap(1))
    order: list[str] = []
    received: dict[int, list[CredentialsMessage]] = {1: [], 2: []}
    clients, runners = [], []
    for worker in (1, 2):
        client = ControlClient(host, port, "t", worker=worker)
        await client.connect()

        async def on_snapshot(snapshot: GatewaySnapshot) -> None:
            order.append("snapshot")

        def on_credentials(message: CredentialsMessage, worker: int = worker) -> None:
            order.append("credentials")
            received[worker].append(message)

        clients.append(client)
        runners.append(asyncio.create_task(client.run(on_snapshot, on_credentials)))
    await server.wait_workers(2, timeout=5)
    for _ in range(500):
        if all(received.values()):
            break
        await asyncio.sleep(0.01)
    assert order[:2] == ["snapshot", "credentials"]
    assert received[1] == [_credentials(True, ["full"])]

    seq = server.publish_credentials(_credentials(False, ["gone"]))
    assert seq == 1
    # The publisher can wait until every worker has the change in force.
    assert await server.wait_credentials(seq, timeout=5)
    assert all(len(messages) == 2 for messages in received.values())
    assert received[1][1] == received[2][1] == {**_credentials(False, ["gone"]), "seq": 1}
    assert not await server.wait_credentials(seq + 1, timeout=0.05)  # nothing sent yet

    report = UsageMessage(type="usage", worker=99, used=["k"], denials=[])
    clients[1].usage(report)
    for _ in range(500):
        if usage:
            break
        await asyncio.sleep(0.01)
    assert usage == [{**report, "worker": 2}]  # the worker as its hello said, not as claimed

    await server.aclose()
    for runner in runners:
        with pytest.raises((ChannelClosed, ConnectionError)):
            await asyncio.wait_for(runner, 5)


async def test_old_callers_need_no_credential_callbacks() -> None:
    server = ControlServer("t", credentials_source=lambda: _credentials(True, []))
    host, port = await server.start()
    client = ControlClient(host, port, "t", worker=1)
    await client.connect()
    seen: list[int] = []

    async def on_snapshot(snapshot: GatewaySnapshot) -> None:
        seen.append(snapshot["version"])

    runner = asyncio.create_task(client.run(on_snapshot))
    await server.wait_workers(1, timeout=5)
    server.publish_credentials(_credentials(False, ["x"]))
    await server.publish(snap(2))
    await server.wait_workers(1, timeout=5)
    assert seen == [0, 2]
    await server.aclose()
    with pytest.raises((ChannelClosed, ConnectionError)):
        await asyncio.wait_for(runner, 5)


async def test_spans_reach_the_control_plane_under_the_workers_own_number() -> None:
    received: list[SpansMessage] = []
    usage: list[UsageMessage] = []
    server = ControlServer("t", on_spans=received.append, on_usage=usage.append)
    host, port = await server.start()
    client = ControlClient(host, port, "t", worker=4)
    await client.connect()

    async def ignore(_: GatewaySnapshot) -> None:
        return None

    runner = asyncio.create_task(client.run(ignore))
    await server.wait_workers(1, timeout=5)
    span: SpanRecord = {
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "span_id": "00f067aa0ba902b7",
        "parent_id": None,
        "name": "GET /apps/x/",
        "service": "gateway",
        "kind": "server",
        "start": 1700000000.5,
        "duration": 0.002,
        "status": 200,
        "error": False,
        "attributes": {"app": "x", "route": "/apps/x/"},
    }
    client.spans([span], dropped=3)
    # The compact form: rows of ids and numbers, what they share sent once as a kind.
    client.span_rows(
        b'[["GET /apps/x/","gateway",{"app":"x","route":"/apps/x/"},"x-1"]]',
        b'[["4bf92f3577b34da6a3ce929d0e0e4736","00f067aa0ba902b7",null,1700000000500000,'
        b'2000,200,0,"r-1"]]',
        dropped=0,
    )
    client.usage({"type": "usage", "worker": 4, "used": ["k"], "denials": []})
    for _ in range(100):
        if len(received) == 2 and usage:
            break
        await asyncio.sleep(0.01)
    assert received == [
        {"type": "spans", "worker": 4, "spans": [span], "dropped": 3},
        {
            "type": "spans",
            "worker": 4,
            "spans": [
                {
                    **span,
                    "attributes": {**span["attributes"], "request_id": "r-1", "instance": "x-1"},
                }
            ],
            "dropped": 0,
        },
    ]
    assert usage[0]["used"] == ["k"]  # the other reports still arrive
    await server.aclose()
    with pytest.raises((ChannelClosed, ConnectionError)):
        await asyncio.wait_for(runner, 5)


async def test_spans_without_a_callback_are_ignored() -> None:
    metrics: list[int] = []
    server = ControlServer("t", on_metrics=lambda w, _m: metrics.append(w))
    host, port = await server.start()
    client = ControlClient(host, port, "t", worker=2)
    await client.connect()

    async def ignore(_: GatewaySnapshot) -> None:
        return None

    runner = asyncio.create_task(client.run(ignore))
    await server.wait_workers(1, timeout=5)
    client.spans([], dropped=1)
    client.metrics({"requests": {}, "latency": {}, "upstream_errors": {}, "in_flight": 0})
    for _ in range(100):
        if metrics:
            break
        await asyncio.sleep(0.01)
    assert metrics == [2] and server.workers == [2]  # the channel lives on
    await server.aclose()
    with pytest.raises((ChannelClosed, ConnectionError)):
        await asyncio.wait_for(runner, 5)


def test_malformed_span_rows_are_refused() -> None:
    with pytest.raises(ValueError, match="malformed"):
        expand_span_rows([], [["t", "s", None, 1, 1, 200, 0, "r"]])  # no such kind
    with pytest.raises(ValueError, match="malformed"):
        expand_span_rows([["n", "gateway", {}, None]], [["t", "s"]])
