"""The SLO routes over ``httpx.ASGITransport``: status of each SLO, and the exports as YAML
(or JSON when asked), with RFC 9457 problems for an unknown app or format."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import yaml
from fastapi import FastAPI
from telemetry_testkit import START, metrics

from courtyard.contracts import SloSpec
from courtyard.core import FakeClock
from courtyard.telemetry import MemoryMinuteStore, Telemetry
from courtyard.telemetry.api import slo_router

SLOS = [
    SloSpec("shop", "availability", "availability", 0.999),
    SloSpec("shop", "fast", "latency", 0.99, threshold=0.3),
]


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    telemetry = Telemetry(MemoryMinuteStore(), clock=FakeClock(START))
    telemetry.set_slos("shop", SLOS)
    telemetry.ingest(1, metrics("shop", 995, 5))

    async def app_exists(name: str) -> bool:
        return name in ("shop", "plain")

    app = FastAPI()
    app.include_router(slo_router(telemetry, app_exists))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://node") as http:
        yield http


async def test_status_of_each_slo(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/apps/shop/slos")
    assert response.status_code == 200
    availability, fast = response.json()
    assert availability == {
        "name": "availability",
        "indicator": "availability",
        "objective": 99.9,
        "window": "28d",
        "threshold": None,
        "thresholdCounted": None,
        "thresholdMs": None,
        "total": 1000,
        "bad": 5,
        "sli": 0.995,
        "budgetRemaining": pytest.approx(-4.0),
        "burnRates": {w: pytest.approx(5.0) for w in ("5m", "30m", "1h", "2h", "6h", "1d", "3d")},
    }
    assert fast["threshold"] == 0.3 and fast["thresholdCounted"] == 0.25
    assert (fast["total"], fast["bad"], fast["budgetRemaining"]) == (1000, 0, 1.0)
    plain = await client.get("/api/v1/apps/plain/slos")
    assert plain.status_code == 200 and plain.json() == []


async def test_unknown_app_is_a_problem(client: httpx.AsyncClient) -> None:
    for path in ("/api/v1/apps/nope/slos", "/api/v1/apps/nope/slos/export?format=sloth"):
        response = await client.get(path)
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["title"] == "App not found"


@pytest.mark.parametrize(
    ("form", "key"), [("openslo", "apiVersion"), ("sloth", "version"), ("prometheus", "groups")]
)
async def test_exports_are_yaml(client: httpx.AsyncClient, form: str, key: str) -> None:
    response = await client.get("/api/v1/apps/shop/slos/export", params={"format": form})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/yaml")
    documents = list(yaml.safe_load_all(response.text))
    assert key in documents[0]
    if form == "openslo":
        assert [d["metadata"]["name"] for d in documents] == ["shop-availability", "shop-fast"]
    as_json = await client.get(
        "/api/v1/apps/shop/slos/export",
        params={"format": form},
        headers={"Accept": "application/json"},
    )
    assert as_json.headers["content-type"] == "application/json"
    assert as_json.json() == (documents if form == "openslo" else documents[0])


async def test_openslo_is_the_default_and_a_bad_format_is_a_problem(
    client: httpx.AsyncClient,
) -> None:
    default = await client.get("/api/v1/apps/shop/slos/export")
    assert next(yaml.safe_load_all(default.text))["apiVersion"] == "openslo/v1"
    bad = await client.get("/api/v1/apps/shop/slos/export", params={"format": "nagios"})
    assert bad.status_code == 400
    assert bad.headers["content-type"] == "application/problem+json"
    assert bad.json()["status"] == 400 and "nagios" in bad.json()["detail"]
