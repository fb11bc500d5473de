"""Reading valid manifests: field values, defaults, the canonical document and the schema."""

from __future__ import annotations

import json
import textwrap
from typing import Any

import pytest

from courtyard.catalog import (
    Manifest,
    expand_environment,
    expand_placeholders,
    manifest_json_schema,
    parse_manifest,
)

FULL = """\
apiVersion: courtyard.dev/v1alpha1
kind: Application
metadata:
  name: expenses
  title: Expense reports
  owner: team-finance
  businessOwner: dana@example.com
  tags: [finance, reports]
  costCenter: CC-1234
  description: Submit and approve expense reports.
spec:
  stage: validated
  run:
    command: ["python", "-m", "expenses", "--port", "${PORT}", "--price=$$5"]
    env: {LOG_LEVEL: info, BASE: "/apps/${COURTYARD_APP}/", URL: "http://${HOST}:${PORT}${BASE}"}
    replicas: 3
    health: {path: /healthz, interval: 500ms, timeout: 2, failureThreshold: 5}
    readyTimeout: 1m
    drainTimeout: 0
    resources: {memory: 256Mi, cpu: 500m}
  routes: [{path: /apps/expenses/}, {path: /, host: expenses.example.com, maxBodySize: 1Gi}]
  access: {allow: ["group:finance", "role:auditor", "user:dana@example.com"], public: false}
  provides: [expense-reporting, receipts.v1]
  consumes: [{service: ledger, paths: ["/entries/**"], methods: [GET, POST]}]
"""

MINIMAL = """\
apiVersion: courtyard.dev/v1alpha1
kind: Application
metadata: {name: notes, owner: team-a, businessOwner: a@example.com}
spec:
  run: {command: [python, app.py]}
"""


def test_full_manifest_fields() -> None:
    m = parse_manifest(FULL)
    assert m.name == "expenses"
    assert m.metadata.title == "Expense reports"
    assert m.metadata.business_owner == "dana@example.com"
    assert m.metadata.tags == ["finance", "reports"]
    assert m.metadata.cost_center == "CC-1234"
    assert m.spec.stage == "validated"
    run = m.spec.run
    assert run is not None
    assert run.command[-1] == "--price=$$5"
    assert run.replicas == 3
    assert (run.health.path, run.health.tcp) == ("/healthz", False)
    assert (run.health.interval, run.health.timeout, run.health.failure_threshold) == (0.5, 2, 5)
    assert (run.ready_timeout, run.drain_timeout) == (60.0, 0.0)
    assert run.resources.memory == 256 * 2**20
    assert run.resources.cpu == 500  # millicores
    assert [(r.host, r.path, r.max_body_size) for r in m.spec.routes] == [
        (None, "/apps/expenses/", 10 * 2**20),
        ("expenses.example.com", "/", 2**30),
    ]
    assert m.spec.access.allow[2] == "user:dana@example.com"
    assert m.spec.provides == ["expense-reporting", "receipts.v1"]
    assert m.spec.consumes[0].methods == ["GET", "POST"]


def test_defaults_are_filled() -> None:
    m = parse_manifest(MINIMAL)
    assert m.metadata.title == "notes"
    assert m.metadata.tags == [] and m.metadata.description is None
    assert m.spec.stage == "prototype"
    assert [r.path for r in m.spec.routes] == ["/apps/notes/"]
    assert m.spec.routes[0].max_body_size == 10 * 2**20
    run = m.spec.run
    assert run is not None
    assert (run.replicas, run.ready_timeout, run.drain_timeout, run.env) == (1, 30.0, 30.0, {})
    # No health section: readiness is a TCP connect to ${PORT}.
    assert (run.health.tcp, run.health.path) == (True, None)
    assert (run.resources.memory, run.resources.cpu) == (None, None)
    assert (m.spec.access.allow, m.spec.access.public) == ([], False)
    assert (m.spec.provides, m.spec.consumes) == ([], [])


def test_a_health_section_means_http_on_healthz() -> None:
    m = parse_manifest(MINIMAL.replace("app.py]}", "app.py], health: {interval: 2s}}"))
    assert m.spec.run is not None
    assert (m.spec.run.health.path, m.spec.run.health.tcp) == ("/healthz", False)


def test_explicit_empty_routes_stay_empty() -> None:
    m = parse_manifest(MINIMAL + "  routes: []\n")
    assert m.spec.routes == []


def test_resource_and_interface_defaults() -> None:
    resource = parse_manifest(MINIMAL.replace("kind: Application", "kind: Resource"))
    assert resource.spec.routes == []
    interface = parse_manifest(
        "apiVersion: courtyard.dev/v1alpha1\nkind: Interface\n"
        "metadata: {name: stripe, owner: team-pay, businessOwner: p@example.com}\n"
        "spec: {provides: [card-payments]}\n"
    )
    assert interface.spec.run is None and interface.spec.routes == []


def test_consumes_defaults_to_everything() -> None:
    m = parse_manifest(MINIMAL + "  consumes: [{service: ledger}]\n")
    assert (m.spec.consumes[0].paths, m.spec.consumes[0].methods) == (["/**"], ["*"])


@pytest.mark.parametrize(
    ("written", "seconds"),
    [("500ms", 0.5), ("2s", 2.0), ("1m", 60.0), ("1.5s", 1.5), ("1h", 3600.0), (3, 3.0)],
)
def test_durations(written: object, seconds: float) -> None:
    m = parse_manifest(MINIMAL.replace("app.py]}", f"app.py], readyTimeout: {written}}}"))
    assert m.spec.run is not None and m.spec.run.ready_timeout == seconds


@pytest.mark.parametrize(
    ("written", "size"),
    [("256Mi", 256 * 2**20), ("1Gi", 2**30), ("1G", 10**9), ("500M", 500 * 10**6),
     ("64Ki", 65536), ("1.5Ki", 1536), ("4096", 4096), (4096, 4096)],
)  # fmt: skip
def test_memory_quantities(written: object, size: int) -> None:
    text = MINIMAL.replace("app.py]}", f"app.py], resources: {{memory: {written}}}}}")
    m = parse_manifest(text)
    assert m.spec.run is not None and m.spec.run.resources.memory == size


@pytest.mark.parametrize(
    ("written", "millicores"), [("500m", 500), ('"0.5"', 500), (1, 1000), (2.25, 2250)]
)
def test_cpu_quantities(written: object, millicores: int) -> None:
    text = MINIMAL.replace("app.py]}", f"app.py], resources: {{cpu: {written}}}}}")
    m = parse_manifest(text)
    assert m.spec.run is not None and m.spec.run.resources.cpu == millicores


def test_document_is_canonical_json_and_round_trips() -> None:
    m = parse_manifest(FULL)
    document = m.document()
    assert json.loads(json.dumps(document)) == document
    assert list(document) == ["apiVersion", "kind", "metadata", "spec"]
    assert document["metadata"]["businessOwner"] == "dana@example.com"
    assert document["spec"]["run"]["resources"] == {"memory": 256 * 2**20, "cpu": "500m"}
    assert document["spec"]["run"]["health"]["failureThreshold"] == 5
    assert document["spec"]["routes"][1]["maxBodySize"] == 2**30
    assert Manifest.from_document(document) == m
    assert Manifest.from_document(document).document() == document
    # The same manifest written differently has the same canonical document.
    respelled = FULL.replace("memory: 256Mi", "memory: 268435456").replace(
        "cpu: 500m", 'cpu: "0.5"'
    )
    assert parse_manifest(respelled).document() == document


def test_minimal_document_round_trips() -> None:
    m = parse_manifest(MINIMAL)
    assert Manifest.from_document(m.document()) == m


def test_manifests_are_immutable() -> None:
    m = parse_manifest(MINIMAL)
    with pytest.raises(ValueError, match="frozen"):
        m.metadata.name = "other"


def test_json_schema_uses_yaml_names() -> None:
    schema = manifest_json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert set(schema["properties"]) == {"apiVersion", "kind", "metadata", "spec"}
    assert schema["required"] == ["apiVersion", "kind", "metadata"]
    assert schema["additionalProperties"] is False
    definitions: dict[str, Any] = schema["$defs"]
    assert "businessOwner" in definitions["ManifestMetadata"]["properties"]
    run = definitions["RunSpec"]["properties"]
    assert {"readyTimeout", "drainTimeout"} <= set(run)
    assert run["replicas"].items() >= {"type": "integer", "minimum": 1, "maximum": 64}.items()
    json.dumps(schema)


def test_placeholders_expand() -> None:
    values = {"PORT": "8001", "HOST": "127.0.0.1"}
    assert expand_placeholders("--port=${PORT} $$HOME", values) == "--port=8001 $HOME"
    with pytest.raises(KeyError):
        expand_placeholders("${OTHER}", values)


def test_environment_expands_through_other_keys() -> None:
    m = parse_manifest(FULL)
    assert m.spec.run is not None
    platform = {"PORT": "8001", "HOST": "127.0.0.1", "COURTYARD_APP": "expenses"}
    env = expand_environment(m.spec.run.env, platform)
    assert env == {
        "LOG_LEVEL": "info",
        "BASE": "/apps/expenses/",
        "URL": "http://127.0.0.1:8001/apps/expenses/",
    }


def test_yaml_from_an_indented_block() -> None:
    text = textwrap.dedent(
        """\
        apiVersion: courtyard.dev/v1alpha1
        kind: Resource
        metadata: {name: queue, owner: team-a, businessOwner: a@example.com}
        spec: {run: {command: [queue]}, stage: production}
        """
    )
    assert parse_manifest(text.encode()).spec.stage == "production"
