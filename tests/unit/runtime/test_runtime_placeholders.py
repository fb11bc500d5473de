"""Placeholders: ${NAME} and $$ only; everything else is a clear error."""

from __future__ import annotations

import pytest

from courtyard.runtime import PlaceholderError, expand_placeholders
from courtyard.runtime._placeholders import expand_environment


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("--port=${PORT}", "--port=8080"),
        ("${A}${B}", "xy"),
        ("no placeholders", "no placeholders"),
        ("$$", "$"),
        ("price: $$5 and $${PORT}", "price: $5 and ${PORT}"),
        ("${_under_score1}", "u"),
        ("", ""),
    ],
)
def test_expands(template: str, expected: str) -> None:
    variables = {"PORT": "8080", "A": "x", "B": "y", "_under_score1": "u"}
    assert expand_placeholders(template, variables) == expected


def test_a_value_is_not_expanded_again() -> None:
    assert expand_placeholders("${A}", {"A": "${B}", "B": "no"}) == "${B}"


def test_unknown_name_is_named() -> None:
    with pytest.raises(PlaceholderError) as caught:
        expand_placeholders("--db=${DATABASE_URL}", {"PORT": "1"})
    assert caught.value.name == "DATABASE_URL"
    assert "${DATABASE_URL}" in str(caught.value)


@pytest.mark.parametrize(
    ("template", "offender"),
    [
        ("$PORT", "P"),
        ("cost $", "end of text"),
        ("${1abc}", "1abc"),
        ("${}", ""),
        ("${PORT", "PORT"),
        ("${A-B}", "A-B"),
    ],
)
def test_anything_else_after_dollar_is_an_error(template: str, offender: str) -> None:
    with pytest.raises(PlaceholderError) as caught:
        expand_placeholders(template, {"PORT": "1", "A": "a"})
    assert caught.value.name == offender
    assert template in str(caught.value)


def test_env_values_may_use_each_other_and_variables() -> None:
    env = {"URL": "http://${HOST}:${PORT}${PREFIX}", "PREFIX": "/apps/${APP}", "PLAIN": "$$x"}
    expanded = expand_environment(env, {"HOST": "127.0.0.1", "PORT": "9", "APP": "web"})
    assert expanded == {"URL": "http://127.0.0.1:9/apps/web", "PREFIX": "/apps/web", "PLAIN": "$x"}


def test_env_own_keys_shadow_variables() -> None:
    assert expand_environment({"A": "mine", "B": "${A}"}, {"A": "theirs"})["B"] == "mine"


def test_env_cycle_is_an_error() -> None:
    with pytest.raises(PlaceholderError, match="cycle in env: A -> B -> A"):
        expand_environment({"A": "${B}", "B": "${A}"}, {})


def test_env_unknown_names_the_key() -> None:
    with pytest.raises(PlaceholderError, match=r"unknown placeholder \$\{NOPE\} in GREETING"):
        expand_environment({"GREETING": "hi ${NOPE}"}, {})
