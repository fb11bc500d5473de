"""SLO and remediation declarations: parsed into the telemetry vocabulary, mistakes named."""

from __future__ import annotations

import pytest

from courtyard.catalog import Manifest, ManifestInvalid, parse_manifest
from courtyard.contracts import RemediationSpec, SloSpec

BASE = """\
apiVersion: courtyard.dev/v1alpha1
kind: Application
metadata: {name: expenses, owner: team-finance, businessOwner: dana@example.com}
spec:
  run: {command: [python, app.py]}
"""

DECLARED = (
    BASE
    + """\
  slos:
    - {name: availability, indicator: availability, objective: 99.9}
    - {name: fast, indicator: latency, objective: 99, threshold: 300ms, window: 30d}
  remediation:
    - {action: rollback}
    - {severity: ticket, action: scale, slo: fast, cooldown: 30m}
"""
)


def test_declarations_become_specs() -> None:
    manifest = parse_manifest(DECLARED)
    assert manifest.slo_specs() == [
        SloSpec("expenses", "availability", "availability", 0.999, 28 * 86400.0, None),
        SloSpec("expenses", "fast", "latency", 0.99, 30 * 86400.0, 0.3),
    ]
    assert manifest.remediation_specs() == [
        RemediationSpec("expenses", "page", "rollback", None, 600.0),
        RemediationSpec("expenses", "ticket", "scale", "fast", 1800.0),
    ]


def test_the_document_round_trips() -> None:
    manifest = parse_manifest(DECLARED)
    document = manifest.document()
    assert document["spec"]["slos"][0]["objective"] == 99.9
    assert document["spec"]["slos"][0]["window"] == "28d"
    again = Manifest.from_document(document)
    assert again.slo_specs() == manifest.slo_specs()
    assert again.remediation_specs() == manifest.remediation_specs()


def test_no_declarations_no_specs() -> None:
    manifest = parse_manifest(BASE)
    assert manifest.slo_specs() == [] and manifest.remediation_specs() == []


@pytest.mark.parametrize(
    ("slos", "field", "words"),
    [
        (
            "[{name: a, indicator: availability, objective: 100}]",
            "spec.slos[0].objective",
            "below 100",
        ),
        (
            "[{name: a, indicator: availability, objective: '99.9'}]",
            "spec.slos[0].objective",
            "percentage",
        ),
        (
            "[{name: a, indicator: availability, objective: 99, window: 2y}]",
            "spec.slos[0].window",
            "28d",
        ),
        (
            "[{name: a, indicator: availability, objective: 99, window: 91d}]",
            "spec.slos[0].window",
            "1d to 90d",
        ),
        ("[{name: a, indicator: latency, objective: 99}]", "spec.slos[0].threshold", "required"),
        (
            "[{name: a, indicator: availability, objective: 99, threshold: 1s}]",
            "spec.slos[0].threshold",
            "only for a latency",
        ),
        ("[{name: a, indicator: speed, objective: 99}]", "spec.slos[0].indicator", ""),
        (
            "[{name: a, indicator: availability, objective: 99}, "
            "{name: a, indicator: availability, objective: 90}]",
            "spec.slos[1].name",
            "duplicate",
        ),
    ],
)
def test_slo_mistakes_are_named(slos: str, field: str, words: str) -> None:
    with pytest.raises(ManifestInvalid) as caught:
        parse_manifest(BASE + f"  slos: {slos}\n")
    (problem,) = caught.value.problems
    assert problem.field == field
    assert words in problem.message


@pytest.mark.parametrize(
    ("remediation", "field", "words"),
    [
        ("[{action: reboot}]", "spec.remediation[0].action", ""),
        ("[{action: restart, severity: urgent}]", "spec.remediation[0].severity", ""),
        ("[{action: restart, slo: nope}]", "spec.remediation[0].slo", "no SLO named nope"),
    ],
)
def test_remediation_mistakes_are_named(remediation: str, field: str, words: str) -> None:
    with pytest.raises(ManifestInvalid) as caught:
        parse_manifest(BASE + f"  remediation: {remediation}\n")
    (problem,) = caught.value.problems
    assert problem.field == field
    assert words in problem.message
