"""Events are checked and scrubbed where they are built: no secret, no malformed field gets in."""

from __future__ import annotations

import json
from typing import Any

import pytest

from courtyard.audit import (
    MAX_DETAILS_BYTES,
    REDACTED,
    Actor,
    AuditEvent,
    AuditEventInvalid,
)


def event(**overrides: Any) -> AuditEvent:
    fields: dict[str, Any] = {
        "actor": Actor("user", "dana@example.com", "password"),
        "action": "app.deploy",
        "target": "expenses",
        "outcome": "success",
    }
    fields.update(overrides)
    return AuditEvent(**fields)


def test_secret_named_members_are_redacted_at_any_depth() -> None:
    built = event(
        details={
            "user": "dana",
            "Password": "hunter2",
            "headers": {"Authorization": "Bearer abc", "Cookie": "s=1", "accept": "*/*"},
            "steps": [{"client_secret": "x", "api_key": "k", "apiKey": "k", "api-key": "k"}],
            "nested": {"deeper": {"refresh_token": {"value": "t"}, "private_key_pem": "p"}},
            "credentials": ["a", "b"],
            "count": 3,
        }
    )
    assert built.details == {
        "user": "dana",
        "Password": REDACTED,
        "headers": {"Authorization": REDACTED, "Cookie": REDACTED, "accept": "*/*"},
        "steps": [
            {
                "client_secret": REDACTED,
                "api_key": REDACTED,
                "apiKey": REDACTED,
                "api-key": REDACTED,
            }
        ],
        "nested": {"deeper": {"refresh_token": REDACTED, "private_key_pem": REDACTED}},
        "credentials": REDACTED,
        "count": 3,
    }
    assert "hunter2" not in built.details_json and "Bearer" not in built.details_json
    assert json.loads(built.details_json) == built.details


def test_the_callers_mapping_is_copied_not_kept() -> None:
    details: dict[str, Any] = {"token": "t", "list": [1]}
    built = event(details=details)
    details["list"].append(2)
    assert built.details == {"token": REDACTED, "list": [1]}
    assert details["token"] == "t"


@pytest.mark.parametrize(
    "action",
    ["app.deploy", "auth.login.failure", "access.deny", "a.b", "gate_1.check-now"],
)
def test_dotted_verbs_are_actions(action: str) -> None:
    assert event(action=action).action == action


@pytest.mark.parametrize(
    "action",
    [
        "deploy",
        "App.deploy",
        "app.",
        ".app",
        "app..deploy",
        "app.1x",
        "app deploy",
        "app.deploy\n",
        "",
    ],
)
def test_other_actions_are_refused(action: str) -> None:
    with pytest.raises(AuditEventInvalid) as caught:
        event(action=action)
    assert caught.value.field == "action"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"outcome": "ok"}, "outcome"),
        ({"target": ""}, "target"),
        ({"target": "x" * 1025}, "target"),
        ({"target": "line\nbreak"}, "target"),
        ({"reason": "\x1b[31mred"}, "reason"),
        ({"request_id": "r" * 129}, "request_id"),
        ({"trace_id": 7}, "trace_id"),
        ({"details": {"ratio": 0.5}}, "details.ratio"),
        ({"details": {"big": 2**60}}, "details.big"),
        ({"details": {"blob": b"x"}}, "details.blob"),
        ({"details": {1: "x"}}, "details"),
        ({"details": ["not", "an", "object"]}, "details"),
        ({"details": {"s": "\ud800"}}, "details"),
    ],
)
def test_malformed_events_are_refused_with_the_field_named(
    overrides: dict[str, Any], field: str
) -> None:
    with pytest.raises(AuditEventInvalid) as caught:
        event(**overrides)
    assert caught.value.field == field
    assert str(caught.value).startswith(field)


@pytest.mark.parametrize(
    ("kind", "actor_id", "auth", "field"),
    [
        ("robot", "x", None, "actor.kind"),
        ("user", "", None, "actor.id"),
        ("user", "x" * 256, None, "actor.id"),
        ("user", "x", "a" * 65, "actor.auth"),
    ],
)
def test_malformed_actors_are_refused(
    kind: Any, actor_id: str, auth: str | None, field: str
) -> None:
    with pytest.raises(AuditEventInvalid) as caught:
        Actor(kind, actor_id, auth)
    assert caught.value.field == field


def test_oversize_details_are_refused_not_truncated() -> None:
    fits = {"notes": "x" * (MAX_DETAILS_BYTES - len('{"notes":""}'))}
    assert len(event(details=fits).details_json.encode()) == MAX_DETAILS_BYTES
    with pytest.raises(AuditEventInvalid, match="more than the 4096 allowed"):
        event(details={"notes": "x" * MAX_DETAILS_BYTES})


def test_deep_nesting_is_refused() -> None:
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(20):
        node["d"] = {}
        node = node["d"]
    with pytest.raises(AuditEventInvalid, match="nested deeper"):
        event(details=deep)
