"""SLOs for cluster use: OpenSLO v1 documents, a Sloth ``prometheus/v1`` spec, and the
Prometheus rules themselves (recording rules per window, multiwindow multi-burn-rate alerts),
all over the gateway's metric names."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from courtyard.contracts import LATENCY_BUCKETS, SloSpec
from courtyard.telemetry._slo import BURN_WINDOWS, burn_rules, window_label

REQUESTS = "courtyard_gateway_requests_total"
DURATION = "courtyard_gateway_request_duration_seconds_bucket"


def _bound(threshold: float) -> str:
    """The histogram bound the threshold rounds down to (as the built-in store counts)."""
    bounds = [b for b in LATENCY_BUCKETS if b <= threshold + 1e-12]
    return repr(bounds[-1] if bounds else LATENCY_BUCKETS[0])


def queries(spec: SloSpec, window: str) -> tuple[str, str]:
    """(bad events, all events) over ``window`` in PromQL."""
    app = f'app="{spec.app}"'
    if spec.indicator == "availability":
        return (
            f'sum(rate({REQUESTS}{{{app},code_class="5xx"}}[{window}]))',
            f"sum(rate({REQUESTS}{{{app}}}[{window}]))",
        )
    total = f'sum(rate({DURATION}{{{app},le="+Inf"}}[{window}]))'
    good = f'sum(rate({DURATION}{{{app},le="{_bound(spec.threshold or 0.0)}"}}[{window}]))'
    return f"({total} - {good})", total


def openslo_documents(specs: Sequence[SloSpec]) -> list[dict[str, Any]]:
    """One OpenSLO v1 ``SLO`` per spec (ratio of good events, rolling window)."""
    documents = []
    for spec in specs:
        bad, total = queries(spec, "1m")
        documents.append(
            {
                "apiVersion": "openslo/v1",
                "kind": "SLO",
                "metadata": {"name": f"{spec.app}-{spec.name}", "displayName": spec.name},
                "spec": {
                    "service": spec.app,
                    "indicator": {
                        "metadata": {"name": f"{spec.app}-{spec.name}-sli"},
                        "spec": {
                            "ratioMetric": {
                                "counter": True,
                                "bad": {
                                    "metricSource": {
                                        "type": "Prometheus",
                                        "spec": {"query": bad},
                                    }
                                },
                                "total": {
                                    "metricSource": {
                                        "type": "Prometheus",
                                        "spec": {"query": total},
                                    }
                                },
                            }
                        },
                    },
                    "timeWindow": [{"duration": window_label(spec.window), "isRolling": True}],
                    "budgetingMethod": "Occurrences",
                    "objectives": [{"target": spec.objective}],
                },
            }
        )
    return documents


def sloth_document(app: str, specs: Sequence[SloSpec]) -> dict[str, Any]:
    """A Sloth ``prometheus/v1`` spec (``sloth generate`` turns it into rules)."""
    slos = []
    for spec in specs:
        bad, total = queries(spec, "{{.window}}")
        slos.append(
            {
                "name": spec.name,
                "objective": round(spec.objective * 100, 6),
                "sli": {"events": {"error_query": bad, "total_query": total}},
                "alerting": {
                    "name": f"{app}-{spec.name}",
                    "page_alert": {"labels": {"severity": "page"}},
                    "ticket_alert": {"labels": {"severity": "ticket"}},
                },
            }
        )
    return {"version": "prometheus/v1", "service": app, "slos": slos}


def prometheus_rules(app: str, specs: Sequence[SloSpec]) -> dict[str, Any]:
    """A Prometheus rule file: error ratios per window, then the burn-rate alerts."""
    groups = []
    for spec in specs:
        record = f"courtyard:slo_error_ratio:{spec.name}"
        labels = {"app": app, "slo": spec.name}
        rules: list[dict[str, Any]] = []
        for label in BURN_WINDOWS:
            bad, total = queries(spec, label)
            rules.append(
                {"record": f"{record}:rate{label}", "expr": f"{bad} / {total}", "labels": labels}
            )
        for rule in burn_rules(spec.window):
            long, short = window_label(rule.long), window_label(rule.short)
            threshold = f"({rule.factor:.4g} * {spec.budget:.6g})"
            rules.append(
                {
                    "alert": f"SLOBurn{rule.severity.capitalize()}",
                    "expr": (
                        f'{record}:rate{long}{{app="{app}"}} > {threshold} and '
                        f'{record}:rate{short}{{app="{app}"}} > {threshold}'
                    ),
                    "labels": {**labels, "severity": rule.severity},
                    "annotations": {
                        "summary": f"{app}: SLO {spec.name} burns its error budget",
                        "description": f"{rule.factor:.4g}x over {long} and {short}",
                    },
                }
            )
        groups.append({"name": f"courtyard-slo-{app}-{spec.name}", "rules": rules})
    return {"groups": groups}
