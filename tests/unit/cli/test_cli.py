"""The CLI's promises without a node: one readable line and a non-zero exit for every mistake."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from courtyard.cli import app

runner = CliRunner()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_no_node_running_is_one_clear_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for command in (["apps"], ["status"], ["status", "notes"], ["restart", "notes"], ["logs", "x"]):
        result = runner.invoke(app, [*command, "--url", url, "--data-dir", str(tmp_path)])
        assert result.exit_code == 1, command
        assert f"no Courtyard node answers at {url}" in result.output
        assert "Traceback" not in result.output


def test_deploy_of_a_bad_manifest_lists_each_mistake_and_sends_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "courtyard.yaml").write_text(
        "apiVersion: courtyard.dev/v1alpha1\nkind: Application\n"
        "metadata: {name: Bad_Name, businessOwner: x@example.com}\n"
        "spec: {run: {command: [python], replicas: three}}\n"
    )
    # No node listens at this URL: the manifest must be refused before any upload.
    url = f"http://127.0.0.1:{free_port()}"
    result = runner.invoke(app, ["deploy", str(folder), "--url", url, "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "is not a valid manifest" in result.output
    assert "metadata.name" in result.output
    assert "metadata.owner" in result.output
    assert "spec.run.replicas" in result.output
    assert "no Courtyard node" not in result.output


def test_deploy_of_a_folder_without_manifest(tmp_path: Path) -> None:
    result = runner.invoke(app, ["deploy", str(tmp_path), "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "courtyard.yaml: no such file" in result.output


def test_schema_is_json_schema() -> None:
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.output)
    assert "apiVersion" in json.dumps(schema)
    assert schema.get("type") == "object" or "$defs" in schema


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "0"], "'workers'"),
        (["--port", "99999"], "'port'"),
    ],
)
def test_up_with_bad_settings_fails_in_one_line(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = runner.invoke(app, ["up", "--data-dir", str(tmp_path / "d"), *args])
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output


def test_up_on_a_taken_port_says_so(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = runner.invoke(
            app, ["up", "--data-dir", str(tmp_path / "d"), "--port", str(port), "--admin-port", "0"]
        )
    assert result.exit_code == 1
    assert f"cannot listen on 127.0.0.1:{port}: it is already in use" in result.output


def test_init_creates_token_and_database(tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = runner.invoke(app, ["init", "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    token = data / "admin.token"
    assert token.stat().st_mode & 0o777 == 0o600
    assert (data / "courtyard.db").exists()
    first = token.read_text()
    assert runner.invoke(app, ["init", "--data-dir", str(data)]).exit_code == 0
    assert token.read_text() == first  # init twice keeps the credential


def test_init_creates_the_first_admin_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = runner.invoke(
        app, ["init", "--data-dir", str(data), "--admin-email", "root@example.com"]
    )
    assert result.exit_code == 0, result.output
    assert "Platform admin root@example.com, password" in result.output
    password = result.output.split("password", 1)[1].split()[0]
    assert len(password) >= 20  # generated: 18 random bytes, shown once
    again = runner.invoke(
        app, ["init", "--data-dir", str(data), "--admin-email", "root@example.com"]
    )
    assert again.exit_code == 0, again.output
    assert "password" not in again.output  # never shown twice, never replaced


def test_init_takes_the_admin_password_from_the_environment(tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = runner.invoke(
        app,
        ["init", "--data-dir", str(data)],
        env={"COURTYARD_ADMIN_PASSWORD": "correct-horse-battery-staple"},
    )
    assert result.exit_code == 0, result.output
    assert "Platform admin admin@example.com" in result.output
    assert "correct-horse-battery-staple" not in result.output
