"""``courtyard audit``: offline verification of exports, and the commands that ask a node
(served for real on a loopback port by uvicorn in a thread)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from typer.testing import CliRunner

from cli_testkit import served
from courtyard.audit import AuditConfig, AuditError, AuditLog, MemoryAuditStore
from courtyard.audit import api as audit_api
from courtyard.cli._audit import audit

runner = CliRunner()


@pytest.fixture
def export(tmp_path: Path, make_event: Any) -> tuple[Path, Path]:
    """An export of 30 entries and the public key's PEM file."""

    async def build() -> str:
        log = await AuditLog.open(
            AuditConfig(tmp_path / "data", checkpoint_every=10), MemoryAuditStore()
        )
        for i in range(30):
            await log.record(make_event(i))
        await log.export(tmp_path / "export.jsonl")
        await log.aclose()
        return log.public_key_pem

    pem = tmp_path / "audit.pub.pem"
    pem.write_text(asyncio.run(build()))
    return tmp_path / "export.jsonl", pem


def test_verify_from_export_offline(export: tuple[Path, Path]) -> None:
    path, pem = export
    result = runner.invoke(audit, ["verify", "--from-export", str(path), "--public-key", str(pem)])
    assert result.exit_code == 0, result.output
    assert "audit trail verified: 30 entries, 3 signed checkpoints" in result.stdout


def test_verify_from_export_reports_the_first_bad_seq(export: tuple[Path, Path]) -> None:
    path, pem = export
    lines = path.read_text().splitlines()
    lines[12] = lines[12].replace('"target":"app-1"', '"target":"app-7"')
    path.write_text("\n".join(lines) + "\n")
    result = runner.invoke(audit, ["verify", "--from-export", str(path), "--public-key", str(pem)])
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "audit trail broken at seq 12: entry hash mismatch (a changed byte)"
    )
    as_json = runner.invoke(
        audit, ["verify", "--from-export", str(path), "--public-key", pem.read_text(), "--json"]
    )
    assert as_json.exit_code == 1
    document = json.loads(as_json.stdout)
    assert (document["ok"], document["firstBadSeq"], document["problem"]) == (False, 12, "changed")


def test_verify_from_export_without_a_key_says_which_key_it_used(export: tuple[Path, Path]) -> None:
    path, _ = export
    result = runner.invoke(audit, ["verify", "--from-export", str(path)])
    assert result.exit_code == 0
    assert "using the key in the export's header" in result.stderr


def test_verify_from_export_with_bad_input(export: tuple[Path, Path], tmp_path: Path) -> None:
    path, _ = export
    missing = runner.invoke(audit, ["verify", "--from-export", str(tmp_path / "nope.jsonl")])
    assert missing.exit_code == 1 and "no such file" in missing.stderr
    bad_key = runner.invoke(audit, ["verify", "--from-export", str(path), "--public-key", "xyz"])
    assert bad_key.exit_code == 1 and "public key" in bad_key.stderr
    assert "Traceback" not in bad_key.output


def test_commands_without_a_node_fail_with_one_line(tmp_path: Path) -> None:
    result = runner.invoke(
        audit, ["list", "--url", "http://127.0.0.1:9", "--data-dir", str(tmp_path)]
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("error: no Courtyard node answers at http://127.0.0.1:9")


# -- against a node on a loopback port ---------------------------------------------------


@pytest.fixture
def node_url(tmp_path: Path, make_event: Any) -> Iterator[str]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log = await AuditLog.open(
            AuditConfig(tmp_path / "node", checkpoint_every=10), MemoryAuditStore()
        )
        for i in range(15):
            await log.record(
                make_event(i, reason="[bold]markup stays text[/bold]" if i == 4 else None)
            )
        app.include_router(audit_api.router(log))
        yield
        await log.aclose()

    app = FastAPI(lifespan=lifespan)

    @app.exception_handler(AuditError)
    async def audit_error(_: Request, exc: AuditError) -> JSONResponse:
        status, document = audit_api.problem_for(exc)
        return JSONResponse(document, status_code=status, media_type="application/problem+json")

    with served(app) as url:
        yield url


def run(node_url: str, tmp_path: Path, *args: str) -> Any:
    arguments = [*args, "--url", node_url, "--data-dir", str(tmp_path)]
    return runner.invoke(audit, arguments, env={"COLUMNS": "200"})


def test_list_show_proof_verify_and_export_through_the_node(node_url: str, tmp_path: Path) -> None:
    listed = run(node_url, tmp_path, "list", "--actor", "user-1@example.com", "--limit", "3")
    assert listed.exit_code == 0, listed.output
    assert "user:user-1@example.com" in listed.stdout and "More: --after 8" in listed.stdout
    page = json.loads(
        run(node_url, tmp_path, "list", "--json", "--after", "4", "--limit", "2").stdout
    )
    assert [e["seq"] for e in page["entries"]] == [5, 6]
    shown = run(node_url, tmp_path, "show", "5")
    assert shown.exit_code == 0 and "[bold]markup stays text[/bold]" in shown.stdout
    assert "entry hash" in shown.stdout
    assert run(node_url, tmp_path, "show", "99").stderr.startswith(
        "error: Audit entry not found: the audit trail has no entry 99"
    )
    proof = run(node_url, tmp_path, "proof", "7")
    assert proof.exit_code == 0, proof.output
    assert "tree size   10" in proof.stdout and "the proof leads to the signed root" in proof.stdout
    assert json.loads(run(node_url, tmp_path, "proof", "7", "--json").stdout)["valid"] is True
    node_key = httpx.get(f"{node_url}/api/v1/audit/checkpoints/latest").json()["publicKey"]
    pinned = run(node_url, tmp_path, "proof", "7", "--public-key", node_key)
    assert pinned.exit_code == 0 and "(signature checked)" in pinned.stdout
    stranger = Ed25519PrivateKey.generate().public_key()
    other_key = base64.b64encode(stranger.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()
    refused = run(node_url, tmp_path, "proof", "7", "--public-key", other_key)
    assert refused.exit_code == 1 and "do not trust it" in refused.stderr
    verified = run(node_url, tmp_path, "verify")
    assert verified.exit_code == 0 and "audit trail verified: 15 entries" in verified.stdout
    output = tmp_path / "exported.jsonl"
    exported = run(node_url, tmp_path, "export", "--output", str(output))
    assert exported.exit_code == 0, exported.output
    offline = runner.invoke(audit, ["verify", "--from-export", str(output)])
    assert offline.exit_code == 0 and "15 entries" in offline.stdout
