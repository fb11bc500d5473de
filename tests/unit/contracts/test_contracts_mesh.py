"""The mesh's one decision: may this app call that one (default deny), and publish a topic."""

from __future__ import annotations

import pytest

from courtyard.contracts import (
    MeshPolicy,
    app_of_spiffe_id,
    call_refusal,
    path_matches,
    publish_refusal,
    spiffe_id,
    subscribers_of,
)


def mesh(
    consumes: list[tuple[str, list[str], list[str]]] = (),  # type: ignore[assignment]
    accepts: list[tuple[str, list[str], list[str]]] | None = None,
    publishes: list[str] = (),  # type: ignore[assignment]
    subscribes: list[tuple[str, str]] = (),  # type: ignore[assignment]
) -> MeshPolicy:
    return MeshPolicy(
        consumes=[{"service": s, "paths": p, "methods": m} for s, p, m in consumes],
        accepts=None
        if accepts is None
        else [{"caller": c, "paths": p, "methods": m} for c, p, m in accepts],
        publishes=list(publishes),
        subscribes=[{"topic": t, "handler": h} for t, h in subscribes],
    )


EXPENSES = mesh(consumes=[("ledger", ["/entries/**"], ["GET", "POST"])])
LEDGER = mesh()


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/entries", True),
        ("GET", "/entries/1", True),
        ("POST", "/entries/1/lines/2", True),
        ("DELETE", "/entries/1", False),
        ("GET", "/admin", False),
        ("GET", "/entriesx", False),
    ],
)
def test_the_caller_must_declare_the_call(method: str, path: str, allowed: bool) -> None:
    refusal = call_refusal("expenses", EXPENSES, "ledger", LEDGER, method, path)
    assert (refusal is None) is allowed


def test_undeclared_services_and_unknown_apps_are_refused() -> None:
    assert "consumes" in (call_refusal("expenses", EXPENSES, "notes", mesh(), "GET", "/") or "")
    assert call_refusal("ghost", None, "ledger", LEDGER, "GET", "/entries")
    assert call_refusal("expenses", EXPENSES, "ledger", None, "GET", "/entries")


def test_the_target_may_narrow_its_callers_with_accepts() -> None:
    strict = mesh(accepts=[("expenses", ["/entries/*"], ["GET"])])
    assert call_refusal("expenses", EXPENSES, "ledger", strict, "GET", "/entries/1") is None
    refusal = call_refusal("expenses", EXPENSES, "ledger", strict, "POST", "/entries/1")
    assert refusal is not None and "accepts" in refusal
    anyone = mesh(accepts=[("*", ["/**"], ["*"])])
    assert call_refusal("expenses", EXPENSES, "ledger", anyone, "POST", "/entries/1") is None
    nobody = mesh(accepts=[])
    assert call_refusal("expenses", EXPENSES, "ledger", nobody, "GET", "/entries") is not None


def test_globs() -> None:
    assert path_matches(["/a/*/c"], "/a/b/c")
    assert not path_matches(["/a/*/c"], "/a/b/x/c")
    assert path_matches(["/a/**"], "/a")
    assert path_matches(["/**"], "/anything/at/all")
    assert not path_matches(["/a.b"], "/aXb")  # dots are literal


def test_publish_needs_the_topic_declared_and_subscribers_are_found() -> None:
    publisher = mesh(publishes=["expenses.submitted"])
    assert publish_refusal("expenses", publisher, "expenses.submitted") is None
    assert publish_refusal("expenses", publisher, "ledger.closed") is not None
    assert publish_refusal("ghost", None, "expenses.submitted") is not None
    policies = {
        "ledger": mesh(subscribes=[("expenses.submitted", "/events")]),
        "audit-sink": mesh(subscribes=[("expenses.submitted", "/in")]),
        "notes": mesh(),
    }
    assert subscribers_of("expenses.submitted", policies) == [
        ("audit-sink", "/in"),
        ("ledger", "/events"),
    ]


def test_spiffe_ids_round_trip() -> None:
    value = spiffe_id("courtyard.local", "ledger")
    assert value == "spiffe://courtyard.local/app/ledger"
    assert app_of_spiffe_id(value, "courtyard.local") == "ledger"
    assert app_of_spiffe_id(value, "other.domain") is None
    assert app_of_spiffe_id("spiffe://courtyard.local/app/a/b", "courtyard.local") is None
