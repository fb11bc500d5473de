"""What an app process gets: argv and a minimal environment (pure)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from courtyard.runtime import (
    InvalidSpec,
    PlaceholderError,
    RuntimeConfig,
    WorkloadSpec,
)
from courtyard.runtime._environment import check_spec, launch_plan

CONFIG = RuntimeConfig(
    data_dir=Path("/nowhere"),
    node_id="node-a",
    platform_url="http://127.0.0.1:8080",
    extra_env={"OPERATOR_NOTE": "hi", "PORT": "operator may not win"},
)
NODE_ENV = {
    "PATH": "/usr/bin:/bin",
    "HOME": "/home/node",
    "LANG": "C.UTF-8",
    "TZ": "UTC",
    "AWS_SECRET_ACCESS_KEY": "hunter2",
    "COURTYARD_DATABASE_URL": "postgresql://secret",
}
SPEC = WorkloadSpec(
    app="expenses",
    revision=4,
    bundle=None,
    command=("python", "-m", "expenses", "--port", "${PORT}", "--url=${SELF_URL}", "$$HOME"),
    env={"SELF_URL": "http://${HOST}:${PORT}/", "MODE": "prod"},
)


def plan() -> tuple[tuple[str, ...], dict[str, str]]:
    result = launch_plan(
        SPEC,
        CONFIG,
        instance_id="expenses-4-ab12cd",
        port=4242,
        node_env=NODE_ENV,
        python_dir="/venv/bin",
    )
    return result.argv, result.env


def test_argv_is_expanded() -> None:
    argv, _ = plan()
    assert argv == (
        "python",
        "-m",
        "expenses",
        "--port",
        "4242",
        "--url=http://127.0.0.1:4242/",
        "$HOME",
    )


def test_env_is_minimal_and_complete() -> None:
    _, env = plan()
    assert env == {
        "PATH": "/venv/bin:/usr/bin:/bin",
        "HOME": "/home/node",
        "LANG": "C.UTF-8",
        "TZ": "UTC",
        "PYTHONUNBUFFERED": "1",
        "OPERATOR_NOTE": "hi",
        "SELF_URL": "http://127.0.0.1:4242/",
        "MODE": "prod",
        "PORT": "4242",
        "HOST": "127.0.0.1",
        "COURTYARD_APP": "expenses",
        "COURTYARD_REVISION": "4",
        "COURTYARD_INSTANCE": "expenses-4-ab12cd",
        "COURTYARD_PLATFORM_URL": "http://127.0.0.1:8080",
        "COURTYARD_NODE_ID": "node-a",
    }


def test_path_has_a_default() -> None:
    env = launch_plan(SPEC, CONFIG, instance_id="x", port=1, node_env={}, python_dir="/py").env
    assert env["PATH"] == "/py:/usr/local/bin:/usr/bin:/bin"
    assert "HOME" not in env


def test_a_spec_may_set_path() -> None:
    spec = replace(SPEC, env={**SPEC.env, "PATH": "/opt/app/bin"})
    assert (
        launch_plan(spec, CONFIG, instance_id="x", port=1, node_env=NODE_ENV, python_dir="/py").env[
            "PATH"
        ]
        == "/opt/app/bin"
    )


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"app": "Bad_Name"}, "RFC 1123"),
        ({"command": ()}, "command is empty"),
        ({"replicas": -1}, "replicas"),
        ({"revision": -1}, "revision"),
        ({"bundle": Path("/definitely/not/here")}, "not a folder"),
        ({"health_path": "healthz"}, "health path"),
        ({"health_path": "/a b"}, "health path"),
        ({"ready_timeout": 0}, "ready_timeout"),
        ({"health_interval": -1.0}, "health_interval"),
        ({"failure_threshold": 0}, "failure_threshold"),
        ({"memory_bytes": 1000}, "memory_bytes"),
        ({"cpu_millis": 0}, "cpu_millis"),
        ({"env": {"PORT": "80"}}, "env may not set PORT"),
    ],
)
def test_check_spec_refuses(changes: dict[str, object], words: str) -> None:
    with pytest.raises(InvalidSpec, match=words):
        check_spec(replace(SPEC, **changes), CONFIG)  # type: ignore[arg-type]


def test_check_spec_finds_unknown_placeholders() -> None:
    with pytest.raises(PlaceholderError, match="DB_URL"):
        check_spec(replace(SPEC, command=("app", "--db", "${DB_URL}")), CONFIG)


def test_check_spec_accepts_the_sample() -> None:
    check_spec(SPEC, CONFIG)
