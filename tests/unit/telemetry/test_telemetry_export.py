"""The SLO exports for cluster use: OpenSLO v1, Sloth prometheus/v1 and Prometheus rules, each
valid YAML over the gateway's metric names."""

from __future__ import annotations

import yaml
from telemetry_testkit import DAY

from courtyard.contracts import SloSpec
from courtyard.telemetry import openslo_document, prometheus_rules, sloth_document

AVAILABILITY = SloSpec("shop", "availability", "availability", 0.999)  # 28 days
FAST = SloSpec("shop", "fast", "latency", 0.99, window=30 * DAY, threshold=0.3)


def round_trip(document: object) -> object:
    return yaml.safe_load(yaml.safe_dump(document, sort_keys=False))


def test_openslo_is_a_ratio_of_prometheus_counters() -> None:
    document = openslo_document(AVAILABILITY)
    assert round_trip(document) == document
    assert document["apiVersion"] == "openslo/v1" and document["kind"] == "SLO"
    assert document["metadata"]["name"] == "shop-availability"
    spec = document["spec"]
    assert spec["service"] == "shop" and spec["budgetingMethod"] == "Occurrences"
    assert spec["timeWindow"] == [{"duration": "28d", "isRolling": True}]
    assert spec["objectives"][0]["target"] == 0.999
    ratio = spec["indicator"]["spec"]["ratioMetric"]
    assert ratio["counter"] is True
    assert ratio["bad"]["metricSource"] == {
        "type": "Prometheus",
        "spec": {"query": 'sum(courtyard_gateway_requests_total{app="shop",code_class="5xx"})'},
    }
    assert ratio["total"]["metricSource"]["spec"]["query"] == (
        'sum(courtyard_gateway_requests_total{app="shop"})'
    )


def test_openslo_latency_counts_the_good_under_the_rounded_bound() -> None:
    documents = openslo_document([AVAILABILITY, FAST])
    assert [d["metadata"]["name"] for d in documents] == ["shop-availability", "shop-fast"]
    ratio = documents[1]["spec"]["indicator"]["spec"]["ratioMetric"]
    assert ratio["good"]["metricSource"]["spec"]["query"] == (
        'sum(courtyard_gateway_request_duration_seconds_bucket{app="shop",le="0.25"})'
    )
    assert 'le="+Inf"' in ratio["total"]["metricSource"]["spec"]["query"]
    assert documents[1]["spec"]["timeWindow"][0]["duration"] == "30d"


def test_sloth_spec() -> None:
    document = sloth_document("shop", [AVAILABILITY, FAST])
    assert round_trip(document) == document
    assert document["version"] == "prometheus/v1" and document["service"] == "shop"
    first, second = document["slos"]
    assert first["name"] == "availability" and first["objective"] == 99.9
    events = first["sli"]["events"]
    assert events["error_query"] == (
        'sum(rate(courtyard_gateway_requests_total{app="shop",code_class="5xx"}[{{.window}}]))'
    )
    assert events["total_query"] == (
        'sum(rate(courtyard_gateway_requests_total{app="shop"}[{{.window}}]))'
    )
    assert first["alerting"]["page_alert"]["labels"]["severity"] == "page"
    assert first["alerting"]["ticket_alert"]["labels"]["severity"] == "ticket"
    assert second["objective"] == 99.0
    assert 'le="0.25"' in second["sli"]["events"]["error_query"]


def test_prometheus_rules_record_every_window_and_alert_with_the_window_factors() -> None:
    document = prometheus_rules("shop", [AVAILABILITY, FAST])
    assert round_trip(document) == document
    groups = document["groups"]
    assert [g["name"] for g in groups] == [
        "courtyard-slo-shop-availability",
        "courtyard-slo-shop-fast",
    ]
    rules = groups[0]["rules"]
    records = [r["record"] for r in rules if "record" in r]
    assert records == [
        f"courtyard:slo_error_ratio:availability:ratio_rate{w}"
        for w in ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
    ]
    assert rules[0]["expr"] == (
        'sum(rate(courtyard_gateway_requests_total{app="shop",code_class="5xx"}[5m]))'
        ' / sum(rate(courtyard_gateway_requests_total{app="shop"}[5m]))'
    )
    alerts = [r for r in rules if "alert" in r]
    assert [(a["labels"]["severity"], a["labels"]["window"]) for a in alerts] == [
        ("page", "1h/5m"),
        ("page", "6h/30m"),
        ("ticket", "1d/2h"),
        ("ticket", "3d/6h"),
    ]
    # 28 days: 13.44, 5.6, 2.8, 0.9333 times the budget of 0.001.
    assert "ratio_rate1h{" in alerts[0]["expr"] and "ratio_rate5m{" in alerts[0]["expr"]
    assert [a["expr"].split(">= ")[1].split(")")[0] + ")" for a in alerts] == [
        "(13.44 * 0.001)",
        "(5.6 * 0.001)",
        "(2.8 * 0.001)",
        "(0.933333 * 0.001)",
    ]
    fast_alerts = [r for r in groups[1]["rules"] if "alert" in r]
    assert "(14.4 * 0.01)" in fast_alerts[0]["expr"]  # 30 days
    assert 'le="0.25"' in groups[1]["rules"][0]["expr"]


def test_no_slos_export_empty_documents() -> None:
    assert openslo_document([]) == []
    assert sloth_document("shop", [])["slos"] == []
    assert prometheus_rules("shop", []) == {"groups": []}
