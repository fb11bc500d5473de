"""Every kind of mistake in courtyard.yaml gives exactly one problem naming the field."""

from __future__ import annotations

import pytest

from courtyard.catalog import Manifest, ManifestInvalid, ManifestProblem, parse_manifest

VALID = """\
apiVersion: courtyard.dev/v1alpha1
kind: Application
metadata:
  name: expenses
  owner: team-finance
  businessOwner: dana@example.com
  tags: [finance]
spec:
  stage: prototype
  run:
    command: ["python", "-m", "expenses", "--port", "${PORT}"]
    env: {LOG_LEVEL: info}
    replicas: 1
    health: {path: /healthz, interval: 1s}
    resources: {memory: 256Mi, cpu: 500m}
  routes: [{path: /apps/expenses/}]
  access: {allow: ["group:finance"]}
  provides: [expense-reporting]
  consumes: [{service: ledger, paths: ["/entries/**"], methods: [GET, POST]}]
"""


def problems_of(text: str) -> list[ManifestProblem]:
    with pytest.raises(ManifestInvalid) as caught:
        parse_manifest(text)
    return caught.value.problems


def test_the_valid_sample_parses() -> None:
    assert isinstance(parse_manifest(VALID), Manifest)


# (test id, text to replace in VALID, replacement, field named, words in the message)
MISTAKES = [
    ("missing-owner", "  owner: team-finance\n", "", "metadata.owner", "required"),
    ("bad-name", "name: expenses", "name: Expenses_App", "metadata.name", "RFC 1123"),
    ("unknown-field", "replicas: 1", "replica: 1", "spec.run.replica", "unknown field"),
    ("replicas-not-int", "replicas: 1", "replicas: three", "spec.run.replicas", "1 to 64"),
    ("replicas-too-many", "replicas: 1", "replicas: 65", "spec.run.replicas", "1 to 64"),
    ("unknown-placeholder", '"${PORT}"]', '"${NOPE}"]', "spec.run.command[4]", "${NOPE}"),
    ("empty-placeholder", '"${PORT}"]', '"${}"]', "spec.run.command[4]", "empty"),
    ("lone-dollar", '"${PORT}"]', '"$PORT"]', "spec.run.command[4]", "$$"),
    ("digit-placeholder", '"${PORT}"]', '"${1X}"]', "spec.run.command[4]", '"1X"'),
    ("unterminated", '"${PORT}"]', '"${PORT"]', "spec.run.command[4]", "unterminated"),
    (
        "env-placeholder",
        "LOG_LEVEL: info",
        'LOG_LEVEL: "${LEVEL}"',
        "spec.run.env.LOG_LEVEL",
        "${LEVEL}",
    ),
    (
        "env-loop",
        "LOG_LEVEL: info",
        'LOG_LEVEL: "${A}", A: "${LOG_LEVEL}"',
        "spec.run.env.LOG_LEVEL",
        "loop",
    ),
    (
        "env-bad-key",
        "LOG_LEVEL: info",
        "LOG-LEVEL: info",
        "spec.run.env.LOG-LEVEL",
        "variable name",
    ),
    ("env-platform-key", "LOG_LEVEL: info", "PORT: '80'", "spec.run.env.PORT", "platform"),
    (
        "env-not-string",
        "LOG_LEVEL: info",
        "LOG_LEVEL: yes",
        "spec.run.env.LOG_LEVEL",
        "expected a string, got true",
    ),
    (
        "route-no-trailing-slash",
        "path: /apps/expenses/}",
        "path: /apps/expenses}",
        "spec.routes[0].path",
        "end with '/'",
    ),
    ("route-dotdot", "path: /apps/expenses/}", "path: /apps/../x/}", "spec.routes[0].path", ".."),
    (
        "route-double-slash",
        "path: /apps/expenses/}",
        "path: /apps//x/}",
        "spec.routes[0].path",
        "//",
    ),
    ("route-percent", "path: /apps/expenses/}", "path: /apps/%41/}", "spec.routes[0].path", "%"),
    (
        "route-reserved",
        "path: /apps/expenses/}",
        "path: /api/v1/}",
        "spec.routes[0].path",
        "reserved",
    ),
    (
        "route-host",
        "path: /apps/expenses/}",
        "path: /, host: Expenses.Example.com}",
        "spec.routes[0].host",
        "DNS",
    ),
    (
        "route-body-size",
        "path: /apps/expenses/}",
        "path: /apps/expenses/, maxBodySize: lots}",
        "spec.routes[0].maxBodySize",
        "size",
    ),
    (
        "duplicate-route",
        "routes: [{path: /apps/expenses/}]",
        "routes: [{path: /apps/expenses/}, {path: /apps/expenses/}]",
        "spec.routes[1]",
        "duplicate",
    ),
    ("run-missing", "  run:\n", "  ignored:\n", "spec.ignored", "unknown field"),
    ("memory-quantity", "memory: 256Mi", "memory: 256MB", "spec.run.resources.memory", "256Mi"),
    ("cpu-quantity", "cpu: 500m", "cpu: lots", "spec.run.resources.cpu", "500m"),
    ("duration", "interval: 1s", "interval: 1 second", "spec.run.health.interval", "duration"),
    ("health-path", "path: /healthz", "path: healthz", "spec.run.health.path", "'/'"),
    (
        "health-tcp-and-path",
        "interval: 1s",
        "interval: 1s, tcp: true",
        "spec.run.health.path",
        "tcp",
    ),
    ("business-owner", "dana@example.com", "dana at example", "metadata.businessOwner", "email"),
    ("stage", "stage: prototype", "stage: live", "spec.stage", "prototype, sandbox"),
    ("kind", "kind: Application", "kind: App", "kind", "Application, Resource, Interface"),
    (
        "api-version",
        "apiVersion: courtyard.dev/v1alpha1",
        "apiVersion: v1",
        "apiVersion",
        "courtyard.dev/v1alpha1",
    ),
    (
        "duplicate-tag",
        "tags: [finance]",
        "tags: [finance, ops, finance]",
        "metadata.tags[2]",
        "duplicate of item [0]",
    ),
    ("bad-tag", "tags: [finance]", "tags: [Finance]", "metadata.tags[0]", "RFC 1123"),
    ("access-entry", '"group:finance"', '"finance"', "spec.access.allow[0]", "group:"),
    (
        "capability",
        "provides: [expense-reporting]",
        "provides: [Expense_Reporting]",
        "spec.provides[0]",
        "capability",
    ),
    (
        "duplicate-capability",
        "provides: [expense-reporting]",
        "provides: [a, a]",
        "spec.provides[1]",
        "duplicate",
    ),
    (
        "method",
        "methods: [GET, POST]",
        "methods: [get]",
        "spec.consumes[0].methods[0]",
        "upper case",
    ),
    ("consumes-path", '"/entries/**"', '"entries"', "spec.consumes[0].paths[0]", "'/'"),
    (
        "empty-command",
        '["python", "-m", "expenses", "--port", "${PORT}"]',
        "[]",
        "spec.run.command",
        "at least 1 item",
    ),
    (
        "command-not-list",
        '["python", "-m", "expenses", "--port", "${PORT}"]',
        "python app.py",
        "spec.run.command",
        "expected a list",
    ),
    ("metadata-not-mapping", "metadata:\n", "metadata: 3\nx:\n", "metadata", "mapping"),
]


@pytest.mark.parametrize(
    ("old", "new", "field", "words"),
    [pytest.param(old, new, field, words, id=name) for name, old, new, field, words in MISTAKES],
)
def test_one_mistake_one_problem(old: str, new: str, field: str, words: str) -> None:
    assert old in VALID
    text = VALID.replace(old, new, 1)
    if field == "metadata":  # the rest of metadata now hangs under "x", which is unknown
        text = VALID.replace("metadata:\n", "metadata: 3\n", 1)
        text = text.replace("  name: expenses\n  owner: team-finance\n", "", 1)
        text = text.replace("  businessOwner: dana@example.com\n  tags: [finance]\n", "", 1)
    problems = problems_of(text)
    assert len(problems) == 1, problems
    (problem,) = problems
    assert problem.source == "courtyard.yaml"
    assert problem.field == field
    assert words in problem.message
    assert "pydantic" not in problem.message and "Input should" not in problem.message


def test_run_missing_for_an_application() -> None:
    text = VALID.split("  run:\n", maxsplit=1)[0] + "  routes: [{path: /apps/expenses/}]\n"
    assert [str(p) for p in problems_of(text)] == [
        "courtyard.yaml: spec.run: required for kind Application"
    ]


def test_run_not_allowed_for_an_interface() -> None:
    text = VALID.replace("kind: Application", "kind: Interface").replace(
        "  routes: [{path: /apps/expenses/}]\n", ""
    )
    assert [(p.field, p.message) for p in problems_of(text)] == [
        ("spec.run", "not allowed for kind Interface")
    ]


def test_readable_text_for_a_wrong_type() -> None:
    with pytest.raises(ManifestInvalid) as caught:
        parse_manifest(VALID.replace("replicas: 1", 'replicas: "three"'))
    assert str(caught.value) == (
        'courtyard.yaml: spec.run.replicas: expected an integer from 1 to 64, got "three"'
    )


def test_source_names_the_file() -> None:
    with pytest.raises(ManifestInvalid) as caught:
        parse_manifest(VALID.replace("replicas: 1", "replicas: 0"), source="apps/x/courtyard.yaml")
    assert str(caught.value).startswith("apps/x/courtyard.yaml: spec.run.replicas: ")


def test_three_mistakes_three_problems_in_document_order() -> None:
    text = (
        VALID.replace("name: expenses", "name: Expenses_App")
        .replace("replicas: 1", "replicas: three")
        .replace("provides: [expense-reporting]", "provides: [expense-reporting]\n  extra: 1")
    )
    problems = problems_of(text)
    assert [p.field for p in problems] == ["metadata.name", "spec.run.replicas", "spec.extra"]
    assert len(str(ManifestInvalid(problems)).splitlines()) == 3


def test_bad_yaml_gives_line_and_column() -> None:
    problems = problems_of("apiVersion: courtyard.dev/v1alpha1\nkind: [Application\n")
    assert len(problems) == 1
    assert problems[0].field == "(document)"
    assert problems[0].message.startswith("invalid YAML at line 3, column 1: ")


def test_bad_indentation_is_bad_yaml() -> None:
    text = VALID.replace("  owner: team-finance", " owner: team-finance")
    (problem,) = problems_of(text)
    assert problem.field == "(document)" and "line 5" in problem.message


def test_duplicate_keys_are_refused_naming_the_field() -> None:
    text = VALID.replace("    replicas: 1\n", "    replicas: 1\n    replicas: 2\n")
    (problem,) = problems_of(text)
    assert problem.field == "spec.run.replicas"
    assert problem.message == "duplicate key (line 14; first on line 13)"


def test_duplicate_top_level_key() -> None:
    (problem,) = problems_of(VALID + "kind: Resource\n")
    assert problem.field == "kind"


def test_yaml_merge_keys_are_not_duplicates() -> None:
    text = VALID.replace(
        "    env: {LOG_LEVEL: info}",
        "    env:\n      <<: {LOG_LEVEL: debug}\n      LOG_LEVEL: info",
    )
    run = parse_manifest(text).spec.run
    assert run is not None and run.env == {"LOG_LEVEL": "info"}


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "got an empty document"),
        ("- a\n- b\n", "got a list"),
        ("just text", 'got "just text"'),
        ("a: 1\n---\nb: 2\n", "single document"),
    ],
)
def test_not_one_mapping(text: str, words: str) -> None:
    (problem,) = problems_of(text)
    assert problem.field == "(document)"
    assert words in problem.message


def test_documents_over_one_mebibyte_are_refused() -> None:
    text = VALID + "#" * (2**20) + "\n"
    (problem,) = problems_of(text)
    assert "1 MiB" in problem.message


def test_bytes_that_are_not_utf8() -> None:
    (problem,) = problems_of(VALID.encode().replace(b"finance]", b"fin\xffance]"))  # type: ignore[arg-type]
    assert "UTF-8" in problem.message


def test_alias_bombs_are_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    (problem,) = problems_of("\n".join(lines) + "\n")
    assert "too many values" in problem.message


def test_deep_nesting_is_refused() -> None:
    (problem,) = problems_of("a: " + "[" * 5000 + "]" * 5000 + "\n")
    assert problem.field == "(document)"


def test_from_document_reports_problems_against_document() -> None:
    with pytest.raises(ManifestInvalid) as caught:
        Manifest.from_document({"apiVersion": "courtyard.dev/v1alpha1", "kind": "Resource"})
    assert [str(p) for p in caught.value.problems] == ["(document): metadata: required"]
