"""The access rule shared by the gateway and the portal, and the open-redirect guard."""

from __future__ import annotations

import pytest

from courtyard.contracts import (
    AccessPolicy,
    IdentityClaims,
    admitting_rule,
    claims_for_app,
    safe_next,
)

DANA = IdentityClaims(
    sub="u_1", email="dana@example.com", name="Dana", groups=["finance"], roles=["auditor"]
)


def policy(*allow: str, public: bool = False) -> AccessPolicy:
    return AccessPolicy(public=public, allow=list(allow))


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        ((), None),  # default deny
        (("group:ops",), None),
        (("group:finance",), "group:finance"),
        (("user:dana@example.com",), "user:dana@example.com"),
        (("user:u_1",), "user:u_1"),
        (("user:someone@example.com",), None),
        (("role:auditor",), "role:auditor"),
        (("role:platform-admin",), None),
        (("nonsense",), None),
    ],
)
def test_admitting_rule(rules: tuple[str, ...], expected: str | None) -> None:
    assert admitting_rule(policy(*rules), DANA) == expected


def test_public_admits_everyone_and_anonymous_callers() -> None:
    assert admitting_rule(policy(public=True), None) == "public"
    assert admitting_rule(policy("group:finance"), None) is None


def test_app_roles_reach_only_their_app_and_admit() -> None:
    app_roles = {"ledger": ["viewer"]}
    for_ledger = claims_for_app(DANA, app_roles, "ledger")
    assert for_ledger["roles"] == ["auditor", "viewer"]
    assert claims_for_app(DANA, app_roles, "notes") is DANA
    assert admitting_rule(policy(), for_ledger) == "app-role:viewer"
    assert admitting_rule(policy(), claims_for_app(DANA, app_roles, "notes")) is None


def test_a_user_without_email_is_not_admitted_by_an_empty_email_rule() -> None:
    service = IdentityClaims(sub="svc:x", email="", name="x", groups=[], roles=[])
    assert admitting_rule(policy("user:"), service) is None


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "//evil.example",
        "/\\evil.example",
        "https:evil.example",
        "https://evil.example/",
        "%2F%2Fevil.example",
        "/%2F%2Fevil.example",
        "/%5Cevil.example",
        "/%2f/evil.example",
        "javascript:alert(1)",
        "/apps/\tx",
        "/apps/\nx",
        "relative/path",
        "/" + "a" * 3000,
    ],
)
def test_unsafe_next_values_fall_back(value: str | None) -> None:
    assert safe_next(value) == "/"


@pytest.mark.parametrize("value", ["/", "/apps/expenses/", "/apps/x?y=1&z=%2F", "/account"])
def test_same_origin_paths_are_kept(value: str) -> None:
    assert safe_next(value) == value
