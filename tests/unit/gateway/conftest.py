"""Fixtures of the gateway tests: an in-process recording upstream and a gateway routing
``/apps/echo/`` to it, both on 127.0.0.1:0.

The kit itself is ``gateway_testkit.py`` (this folder is on pytest's ``pythonpath``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import gateway_testkit as kit
import pytest
import uvloop

from courtyard.gateway import Gateway, GatewayConfig


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]] | None:
    """Run each in-process test on the stock loop and on uvloop (what workers use)."""
    if item.path.name == "test_gateway_workers.py":
        return {"asyncio": asyncio.new_event_loop}  # the gateway runs in child processes
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


# Short limits so that timeout tests take a fraction of a second.
FAST = GatewayConfig(
    header_timeout=0.3,
    keepalive_timeout=5.0,
    sweep_interval=0.02,
    down_time=1.0,
    shutdown_grace=1.0,
)


@pytest.fixture
async def upstream() -> AsyncIterator[kit.Upstream]:  # type: ignore[name-defined]
    server = await kit.Upstream("a").start()
    yield server
    await server.aclose()


@pytest.fixture
def config() -> GatewayConfig:
    return FAST


@pytest.fixture
async def gateway(
    upstream: kit.Upstream,  # type: ignore[name-defined]
    config: GatewayConfig,
) -> AsyncIterator[Gateway]:
    gw = Gateway(config)
    gw.apply(
        kit.snapshot(
            1,
            [kit.route(), kit.route("echo", "/keep/", strip_prefix=False)],
            {"echo": [upstream.instance()]},
        )
    )
    await gw.start("127.0.0.1", 0)
    yield gw
    await gw.aclose(0.5)


@pytest.fixture
def port(gateway: Gateway) -> int:
    return gateway.addresses[0][1]
