"""The issue's acceptance for alerts, on the real Telemetry fed worker counters under a fake
clock: a 99.9 % SLO under a full outage pages within about a minute; a steady 0.05 % error
ratio never pages nor tickets; and a fault drill — half the requests fail, the page fires, a
local receiver gets a correctly signed webhook, the declared rollback runs, errors stop, the
alert resolves — with each step in the audit trail."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from courtyard.contracts import LATENCY_BUCKETS, RemediationSpec, SloSpec, WorkerMetrics
from courtyard.core import FakeClock
from courtyard.telemetry import MemoryMinuteStore as MemoryStore
from courtyard.telemetry import Telemetry
from courtyard.telemetry._alerts import Alert, AlertConfig, AlertEngine
from courtyard.telemetry._notify import SIGNATURE_HEADER, Notifier, WebhookChannel, verify_signature
from courtyard.telemetry._remediate import Remediator
from fakes import RecordingAudit

START = 1_700_000_040.0  # a whole minute
SLO = SloSpec("shop", "availability", "availability", 0.999)  # 28-day window
SECRET = "drill-secret-0123456789"


def counters(app: str, ok: int, failed: int) -> WorkerMetrics:
    """One worker's cumulative counters: ``ok`` 2xx and ``failed`` 5xx answers."""
    buckets = [0] * (len(LATENCY_BUCKETS) + 1)
    buckets[0] = ok + failed
    route = f"/apps/{app}/"
    return {
        "requests": {f"{app}|{route}|2xx": ok, f"{app}|{route}|5xx": failed},
        "latency": {f"{app}|{route}": {"buckets": buckets, "sum": 0.0, "count": ok + failed}},
        "upstream_errors": {},
        "in_flight": 0,
    }


class Shop:
    """The app as the gateway counts it: requests per second, a share of them failing."""

    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry
        self.ok = 0
        self.failed = 0
        self.failing = 0.0  # share of requests answered 5xx

    def serve(self, requests: int) -> None:
        bad = round(requests * self.failing)
        self.ok += requests - bad
        self.failed += bad
        self.telemetry.ingest(1, counters("shop", self.ok, self.failed))


class NoNotifier:
    def notify(self, alert: Alert) -> None:
        return None

    async def drain(self) -> None:
        return None


def engine_on(telemetry: Telemetry, clock: FakeClock, audit: RecordingAudit) -> AlertEngine:
    return AlertEngine(
        telemetry, NoNotifier(), None, audit, clock=clock, config=AlertConfig(min_events=10)
    )


async def healthy_hours(shop: Shop, clock: FakeClock, engine: AlertEngine, hours: int) -> None:
    for _ in range(hours * 60):
        shop.serve(1200)  # 20 requests a second
        await clock.advance(60)
        assert await engine.evaluate() == []


async def test_a_full_outage_pages_within_about_a_minute() -> None:
    clock, audit = FakeClock(START), RecordingAudit()
    telemetry = Telemetry(MemoryStore(), clock=clock)
    telemetry.set_slos("shop", [SLO])
    engine = engine_on(telemetry, clock, audit)
    shop = Shop(telemetry)
    await healthy_hours(shop, clock, engine, 6)

    shop.failing = 1.0
    paged_after = None
    for elapsed in range(10, 301, 10):  # reports and evaluations every 10 s
        shop.serve(200)
        await clock.advance(10)
        changed = await engine.evaluate()
        if any(a.severity == "page" for a in changed):
            paged_after = elapsed
            break
    assert paged_after is not None and paged_after <= 70, paged_after
    [page] = [a for a in engine.alerts() if a.severity == "page"]
    assert page.burn is not None and (page.burn.long, page.burn.short) == ("1h", "5m")
    assert page.burn.long_rate >= page.burn.factor == pytest.approx(13.44)
    fires = [e.details["fingerprint"] for e in audit.events if e.action == "alert.fire"]
    assert "shop/availability/page" in fires  # (the ticket rules hold too: a second alert)


async def test_a_steady_five_in_ten_thousand_never_pages_nor_tickets() -> None:
    clock, audit = FakeClock(START), RecordingAudit()
    telemetry = Telemetry(MemoryStore(), clock=clock)
    telemetry.set_slos("shop", [SLO])
    engine = engine_on(telemetry, clock, audit)
    shop = Shop(telemetry)
    shop.failing = 0.0005  # 10 of 20 000 a minute: burn rate 0.5
    for _ in range(3 * 24 * 60):  # three days, minute by minute
        shop.serve(20_000)
        await clock.advance(60)
        assert await engine.evaluate() == []
    status = telemetry.status(SLO)
    assert status.bad == 3 * 24 * 60 * 10
    assert status.burn["3d"] == pytest.approx(0.5)
    assert engine.alerts(include_resolved=True) == []
    assert audit.events == []


async def test_the_minimum_traffic_guard_on_real_counters() -> None:
    clock, audit = FakeClock(START), RecordingAudit()
    telemetry = Telemetry(MemoryStore(), clock=clock)
    telemetry.set_slos("shop", [SLO])
    engine = engine_on(telemetry, clock, audit)
    shop = Shop(telemetry)
    shop.failing = 1.0
    shop.serve(9)  # nine requests at night, all failing: below the guard of 10 events
    for _ in range(6 * 6):
        assert await engine.evaluate() == []
        await clock.advance(600)
    shop.serve(10)  # ten failing requests in one minute: every rule may hold
    assert {a.severity for a in await engine.evaluate()} == {"page", "ticket"}


# -- the fault drill ----------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    received: list[tuple[dict[str, str], bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/alerts", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def paging(engine: AlertEngine) -> bool:
    return any(a.severity == "page" for a in engine.alerts())


class Lifecycle:
    """Rolling back the shop fixes it."""

    def __init__(self, shop: Shop) -> None:
        self.shop = shop
        self.calls: list[str] = []

    async def restart(self, app: str) -> str:
        self.calls.append(f"restart {app}")
        return "restarted"

    async def rollback(self, app: str) -> str:
        self.calls.append(f"rollback {app}")
        self.shop.failing = 0.0
        return "rolled back to revision 1"

    async def scale(self, app: str) -> str:
        self.calls.append(f"scale {app}")
        return "3 replicas"


async def test_fault_drill(receiver: tuple[str, list[tuple[dict[str, str], bytes]]]) -> None:
    url, received = receiver
    clock, audit = FakeClock(START), RecordingAudit()
    telemetry = Telemetry(MemoryStore(), clock=clock)
    telemetry.set_slos("shop", [SLO])
    shop = Shop(telemetry)
    lifecycle = Lifecycle(shop)
    remediator = Remediator(lifecycle, audit, clock=clock)
    remediator.set_plan("shop", [RemediationSpec("shop", "page", "rollback")])
    notifier = Notifier([WebhookChannel(url, SECRET)], audit, clock=clock)
    engine = AlertEngine(
        telemetry, notifier, remediator, audit, clock=clock, config=AlertConfig(min_events=10)
    )
    try:
        await healthy_hours(shop, clock, engine, 1)
        shop.failing = 0.5  # the new revision fails half of its requests
        for _ in range(6 * 60):
            shop.serve(200)
            await clock.advance(10)
            await engine.evaluate()
            await engine.drain()
            if lifecycle.calls:
                break
        assert lifecycle.calls == ["rollback shop"]
        page_body = next(
            body for _, body in received if json.loads(body)["alert"]["severity"] == "page"
        )
        headers = next(h for h, b in received if b == page_body)
        assert verify_signature(
            SECRET, headers[SIGNATURE_HEADER.lower()], page_body, now=clock.time()
        )
        assert json.loads(page_body)["status"] == "firing"

        for _ in range(2 * 60):  # errors stopped: the page resolves
            shop.serve(1200)
            await clock.advance(60)
            await engine.evaluate()
            await engine.drain()
            if not paging(engine):
                break
        assert not paging(engine)  # (the ticket may go on: 6 h of budget burnt faster)
        statuses = [
            json.loads(b)["status"]
            for _, b in received
            if json.loads(b)["alert"]["severity"] == "page"
        ]
        assert statuses == ["firing", "resolved"]
    finally:
        await notifier.aclose()

    page = [
        (e.action, e.outcome)
        for e in audit.events
        if e.details.get("fingerprint") == "shop/availability/page"
    ]
    assert page == [
        ("alert.fire", "success"),
        ("alert.notify", "success"),
        ("remediation.run", "success"),
        ("alert.resolve", "success"),
        ("alert.notify", "success"),
    ] or page == [
        ("alert.fire", "success"),
        ("remediation.run", "success"),
        ("alert.notify", "success"),
        ("alert.resolve", "success"),
        ("alert.notify", "success"),
    ]
    run = next(e for e in audit.events if e.action == "remediation.run")
    assert run.details["result"] == "rolled back to revision 1"
