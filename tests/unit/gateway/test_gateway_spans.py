"""The gateway's spans: one per traced request, continuing the caller's trace (W3C Trace
Context), sampled parent-based, errors kept even unsampled, nothing with telemetry off."""

from __future__ import annotations

from dataclasses import replace

import gateway_testkit as kit

from courtyard.gateway import Gateway, GatewayConfig

FAST = GatewayConfig(header_timeout=0.3, keepalive_timeout=5.0, sweep_interval=0.02)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


def sent_traceparent(upstream: kit.Upstream) -> str:
    return upstream.requests[-1].header("traceparent")


async def test_a_continued_trace_gets_a_gateway_span(
    port: int, upstream: kit.Upstream, gateway: Gateway
) -> None:
    headers = {"traceparent": f"00-{TRACE}-{PARENT}-01", "X-Request-Id": "req-1"}
    response = await kit.request(port, "/apps/echo/a", headers=headers)
    assert response.status == 200
    version, trace, span, flags = sent_traceparent(upstream).split("-")
    assert (version, trace, flags) == ("00", TRACE, "01")
    spans, dropped = gateway.take_spans()
    (record,) = spans
    assert dropped == 0
    assert (record["trace_id"], record["span_id"], record["parent_id"]) == (TRACE, span, PARENT)
    assert record["service"] == "gateway" and record["name"] == "GET /apps/echo/"
    assert record["status"] == 200 and not record["error"]
    assert record.get("attributes", {})["request_id"] == "req-1"
    assert record.get("attributes", {})["app"] == "echo"
    assert gateway.take_spans() == ([], 0)


async def test_unsampled_traces_keep_only_errors(
    port: int, upstream: kit.Upstream, gateway: Gateway
) -> None:
    unsampled = {"traceparent": f"00-{TRACE}-{PARENT}-00"}
    await kit.request(port, "/apps/echo/fine", headers=unsampled)
    assert sent_traceparent(upstream).endswith("-00")  # the decision travels on
    await kit.request(port, "/apps/echo/status/503", headers=unsampled)
    spans, _ = gateway.take_spans()
    assert [(s["status"], s["error"]) for s in spans] == [(503, True)]


async def test_a_new_trace_is_sampled_at_the_configured_share(upstream: kit.Upstream) -> None:
    for share, flag, recorded in ((0.0, "00", 0), (1.0, "01", 1)):
        gw = Gateway(replace(FAST, trace_sample=share))
        gw.apply(kit.snapshot(1, [kit.route()], {"echo": [upstream.instance()]}))
        await gw.start("127.0.0.1", 0)
        try:
            await kit.request(gw.addresses[0][1], "/apps/echo/")
            assert sent_traceparent(upstream).endswith("-" + flag)
            spans, _ = gw.take_spans()
            assert len(spans) == recorded
            if recorded:
                assert spans[0]["parent_id"] is None
        finally:
            await gw.aclose(0.5)


async def test_telemetry_off_counts_and_records_nothing(upstream: kit.Upstream) -> None:
    gw = Gateway(replace(FAST, telemetry=False))
    gw.apply(kit.snapshot(1, [kit.route()], {"echo": [upstream.instance()]}))
    await gw.start("127.0.0.1", 0)
    try:
        await kit.request(gw.addresses[0][1], "/apps/echo/status/500")
        assert sent_traceparent(upstream)  # propagation still happens
        assert gw.take_spans() == ([], 0)
        assert gw.metrics()["requests"] == {} and gw.metrics()["in_flight"] == 0
    finally:
        await gw.aclose(0.5)
