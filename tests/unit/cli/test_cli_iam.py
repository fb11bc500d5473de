"""The directory commands without a node: registered, one clear line on failure, and a
password is never taken from a flag."""

from __future__ import annotations

import socket
from pathlib import Path

import typer
from typer.testing import CliRunner

from courtyard.cli._iam import register

runner = CliRunner()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def app() -> typer.Typer:
    root = typer.Typer(add_completion=False)

    @root.callback()
    def main() -> None:
        """Test root."""

    register(root)
    return root


def test_every_group_is_registered() -> None:
    result = runner.invoke(app(), ["--help"])
    assert result.exit_code == 0
    for name in ("users", "groups", "roles", "tokens", "sessions", "service-accounts"):
        assert name in result.output


def test_no_node_is_one_clear_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for command in (["users", "list"], ["groups", "list"], ["roles", "list"], ["tokens", "list"]):
        result = runner.invoke(app(), [*command, "--url", url, "--data-dir", str(tmp_path)])
        assert result.exit_code == 1, command
        assert f"no Courtyard node answers at {url}" in result.output
        assert "Traceback" not in result.output


def test_passwords_come_from_stdin_not_flags(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    flag = runner.invoke(app(), ["users", "create", "a@example.com", "--password", "secret-pw"])
    assert flag.exit_code != 0
    empty = runner.invoke(
        app(),
        ["users", "create", "a@example.com", "--password-stdin", "--url", url],
        input="\n",
    )
    assert empty.exit_code == 1 and "the password is empty" in empty.output
