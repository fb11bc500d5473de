"""The admin listener's collectors over fakes: instances measured with psutil (a real child
process), SLO budgets and burn rates, firing alerts, apps by stage."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from courtyard.contracts import SloSpec
from courtyard.core import FakeClock
from courtyard.node._metrics import FleetCollector, InstanceCollector, admin_app
from courtyard.runtime import InstanceStatus
from courtyard.telemetry import MemoryMinuteStore, Telemetry


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    yield process
    process.kill()
    process.wait()


class FakeRuntime:
    def __init__(self, statuses: list[InstanceStatus]) -> None:
        self.statuses = statuses

    def instances(self, app: str | None = None) -> list[InstanceStatus]:
        return self.statuses


def status(pid: int | None, state: str = "ready", instance: str = "shop-1") -> InstanceStatus:
    return InstanceStatus(
        id=instance,
        app="shop",
        revision=1,
        pid=pid,
        port=1,
        state=state,  # type: ignore[arg-type]
        restarts=2,
        started_at=1000.0,
        last_exit=None,
    )


def samples(*collectors: object) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        registry.register(collector)  # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_instances_are_measured_with_psutil(child: subprocess.Popen[bytes]) -> None:
    runtime = FakeRuntime(
        [status(child.pid), status(None, "starting", "shop-2"), status(999_999_99, "ready", "x")]
    )
    found = samples(InstanceCollector(runtime, clock=lambda: 1060.0))
    one = (("app", "shop"), ("instance", "shop-1"))
    assert found["courtyard_instance_resident_memory_bytes", one] > 1_000_000
    assert found["courtyard_instance_cpu_seconds_total", one] >= 0
    assert found["courtyard_instance_restarts_total", one] == 2
    assert found["courtyard_instance_uptime_seconds", one] == 60
    assert found["courtyard_instance_ready", one] == 1
    two = (("app", "shop"), ("instance", "shop-2"))
    assert found["courtyard_instance_ready", two] == 0
    assert ("courtyard_instance_resident_memory_bytes", two) not in found  # no process yet
    gone = (("app", "shop"), ("instance", "x"))
    assert ("courtyard_instance_cpu_seconds_total", gone) not in found  # process gone: skipped


@dataclass(frozen=True)
class FakeAlert:
    app: str
    severity: str


async def test_fleet_metrics() -> None:
    clock = FakeClock(1_700_000_040.0)
    telemetry = Telemetry(MemoryMinuteStore(), clock=clock)
    telemetry.set_slos("shop", [SloSpec("shop", "availability", "availability", 0.99)])
    telemetry.ingest(
        1,
        {
            "requests": {"shop|/shop/|2xx": 95, "shop|/shop/|5xx": 5},
            "latency": {},
            "upstream_errors": {},
            "in_flight": 0,
        },
    )
    alerts = [FakeAlert("shop", "page"), FakeAlert("shop", "ticket"), FakeAlert("shop", "page")]
    found = samples(
        FleetCollector(lambda: {"prototype": 2, "production": 1}, telemetry, lambda: alerts)
    )
    assert found["courtyard_apps", (("stage", "prototype"),)] == 2
    slo = (("app", "shop"), ("slo", "availability"))
    assert found["courtyard_slo_error_budget_remaining", slo] == pytest.approx(1 - 0.05 / 0.01)
    assert found["courtyard_slo_burn_rate", (*slo, ("window", "5m"))] == pytest.approx(5.0)
    assert found["courtyard_alerts_firing", (("app", "shop"), ("severity", "page"))] == 2


async def test_admin_app_serves_every_part(child: subprocess.Popen[bytes]) -> None:
    app = admin_app(
        lambda: "courtyard_gateway_in_flight_requests 0\n",
        [InstanceCollector(FakeRuntime([status(child.pid)]))],
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://admin") as client:
        text = (await client.get("/metrics")).text
    assert "courtyard_gateway_in_flight_requests 0" in text
    assert 'courtyard_instance_ready{app="shop",instance="shop-1"} 1.0' in text
    assert "process_cpu_seconds_total" in text
    list(text_string_to_metric_families(text))
