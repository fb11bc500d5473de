"""SLOs for cluster use, over the gateway's Prometheus metrics: OpenSLO v1 documents, a Sloth
``prometheus/v1`` spec, and a Prometheus rule file with the error ratio per window and the
multiwindow multi-burn-rate alerts (Google SRE workbook, "Alerting on SLOs", §6).

Queries sum over every route of the app; a latency threshold is rounded down to a histogram
bound (``le``), as the built-in store counts it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, overload

from courtyard.contracts import SloSpec
from courtyard.telemetry._series import rounded_threshold
from courtyard.telemetry._slo import BURN_WINDOWS, burn_rules, window_label

REQUESTS = "courtyard_gateway_requests_total"  # {app, route, code_class}
DURATION = "courtyard_gateway_request_duration_seconds_bucket"  # {app, route, le}


def _le(spec: SloSpec) -> str:
    return repr(rounded_threshold(spec.threshold or 0.0))


def _selectors(spec: SloSpec) -> tuple[str, str]:
    """(bad, all) series selectors of the SLO's events."""
    app = f'app="{spec.app}"'
    if spec.indicator == "availability":
        return f'{REQUESTS}{{{app},code_class="5xx"}}', f"{REQUESTS}{{{app}}}"
    return f'{DURATION}{{{app},le="{_le(spec)}"}}', f'{DURATION}{{{app},le="+Inf"}}'


def event_queries(spec: SloSpec, window: str) -> tuple[str, str]:
    """(bad events, all events) per second over ``window`` in PromQL."""
    bad, total = _selectors(spec)
    total_rate = f"sum(rate({total}[{window}]))"
    if spec.indicator == "availability":
        return f"sum(rate({bad}[{window}]))", total_rate
    # The histogram counts the good (fast) ones: bad = all - within the threshold.
    return f"({total_rate} - sum(rate({bad}[{window}])))", total_rate


@overload
def openslo_document(spec: SloSpec) -> dict[str, Any]: ...
@overload
def openslo_document(spec: Sequence[SloSpec]) -> list[dict[str, Any]]: ...
def openslo_document(spec: SloSpec | Sequence[SloSpec]) -> dict[str, Any] | list[dict[str, Any]]:
    """An OpenSLO v1 ``SLO`` (https://github.com/OpenSLO/OpenSLO#slo): a ratio of counters,
    occurrences budgeting over a rolling window. A list of SLOs gives a list of documents."""
    if not isinstance(spec, SloSpec):
        return [openslo_document(one) for one in spec]
    selected, total = _selectors(spec)
    ratio_key = "bad" if spec.indicator == "availability" else "good"
    description = (
        "share of answers that are not 5xx"
        if spec.indicator == "availability"
        else f"share of answers within {_le(spec)} s"
    )
    return {
        "apiVersion": "openslo/v1",
        "kind": "SLO",
        "metadata": {"name": f"{spec.app}-{spec.name}", "displayName": f"{spec.app} {spec.name}"},
        "spec": {
            "description": description,
            "service": spec.app,
            "indicator": {
                "metadata": {"name": f"{spec.app}-{spec.name}-{spec.indicator}"},
                "spec": {
                    "ratioMetric": {
                        "counter": True,
                        ratio_key: _prometheus(f"sum({selected})"),
                        "total": _prometheus(f"sum({total})"),
                    }
                },
            },
            "timeWindow": [{"duration": window_label(spec.window), "isRolling": True}],
            "budgetingMethod": "Occurrences",
            "objectives": [{"displayName": spec.name, "target": spec.objective}],
        },
    }


def _prometheus(query: str) -> dict[str, Any]:
    return {"metricSource": {"type": "Prometheus", "spec": {"query": query}}}


def sloth_document(app: str, specs: Sequence[SloSpec]) -> dict[str, Any]:
    """A Sloth ``prometheus/v1`` spec (https://sloth.dev/specs/prometheus/v1/); ``sloth
    generate`` turns it into the same kind of rules as :func:`prometheus_rules`. Sloth's
    default alert windows are the 30-day ones."""
    slos = []
    for spec in specs:
        bad, total = event_queries(spec, "{{.window}}")
        slos.append(
            {
                "name": spec.name,
                "objective": round(spec.objective * 100, 6),
                "description": f"{spec.indicator} of {app}",
                "labels": {"indicator": spec.indicator},
                "sli": {"events": {"error_query": bad, "total_query": total}},
                "alerting": {
                    "name": f"{_camel(app)}{_camel(spec.name)}BudgetBurn",
                    "labels": {"app": app, "slo": spec.name},
                    "annotations": {"summary": f"{app}: SLO {spec.name} burns its error budget"},
                    "page_alert": {"labels": {"severity": "page"}},
                    "ticket_alert": {"labels": {"severity": "ticket"}},
                },
            }
        )
    return {
        "version": "prometheus/v1",
        "service": app,
        "labels": {"owner": "courtyard"},
        "slos": slos,
    }


def prometheus_rules(app: str, specs: Sequence[SloSpec]) -> dict[str, Any]:
    """A Prometheus rule file: per SLO, recording rules for the error ratio over every alert
    window, then one alert per burn rule — the long and the short window both at or over
    ``factor * budget`` (the factors follow the SLO's window, see :func:`burn_rules`)."""
    groups = []
    for spec in specs:
        record = f"courtyard:slo_error_ratio:{spec.name}"
        labels = {"app": app, "slo": spec.name}
        rules: list[dict[str, Any]] = []
        for label in BURN_WINDOWS:
            bad, total = event_queries(spec, label)
            expr = f"{bad} / {total}"
            rules.append({"record": f"{record}:ratio_rate{label}", "expr": expr, "labels": labels})
        for rule in burn_rules(spec.window):
            long, short = window_label(rule.long), window_label(rule.short)
            threshold = f"({rule.factor:.6g} * {spec.budget:.6g})"
            selector = f'{{app="{app}",slo="{spec.name}"}}'
            rules.append(
                {
                    "alert": f"{_camel(app)}{_camel(spec.name)}BudgetBurn",
                    "expr": (
                        f"{record}:ratio_rate{long}{selector} >= {threshold}\n"
                        f"and {record}:ratio_rate{short}{selector} >= {threshold}"
                    ),
                    "labels": {**labels, "severity": rule.severity, "window": f"{long}/{short}"},
                    "annotations": {
                        "summary": f"{app}: SLO {spec.name} burns its error budget",
                        "description": (
                            f"{rule.budget_share:.0%} of the {window_label(spec.window)} budget "
                            f"in {long}: burn rate at least {rule.factor:.4g} over {long} "
                            f"and {short}"
                        ),
                    },
                }
            )
        groups.append({"name": f"courtyard-slo-{app}-{spec.name}", "rules": rules})
    return {"groups": groups}


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace("_", "-").split("-"))
