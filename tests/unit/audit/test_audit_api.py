"""``/api/v1/audit`` over an in-process transport, with the node's way of mapping errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from courtyard.audit import (
    AuditConfig,
    AuditError,
    AuditLog,
    Checkpoint,
    MemoryAuditStore,
    load_public_key,
    verify_export,
    verify_inclusion,
)
from courtyard.audit import api as audit_api
from courtyard.core import FakeClock


@pytest.fixture
async def audit(tmp_path: Path, clock: FakeClock) -> AsyncIterator[AuditLog]:
    log = await AuditLog.open(
        AuditConfig(tmp_path, checkpoint_every=10), MemoryAuditStore(), clock=clock
    )
    try:
        yield log
    finally:
        await log.aclose()


@pytest.fixture
async def client(audit: AuditLog) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.include_router(audit_api.router(audit))

    @app.exception_handler(AuditError)
    async def audit_error(_: Request, exc: AuditError) -> JSONResponse:
        status, document = audit_api.problem_for(exc)
        return JSONResponse(document, status_code=status, media_type="application/problem+json")

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://node") as http:
        yield http


async def fill(audit: AuditLog, clock: FakeClock, make_event: Any, count: int = 25) -> None:
    for i in range(count):
        action = ("app.deploy", "app.stop", "access.deny")[i % 3]
        outcome = "denied" if action == "access.deny" else "success"
        await audit.record(make_event(i, action=action, outcome=outcome))
        await clock.advance(60)


async def test_list_filters_and_pages(
    client: httpx.AsyncClient, audit: AuditLog, clock: FakeClock, make_event: Any
) -> None:
    await fill(audit, clock, make_event)
    page = (await client.get("/api/v1/audit", params={"action": "app.", "limit": 5})).json()
    assert [e["seq"] for e in page["entries"]] == [1, 2, 4, 5, 7]
    assert page["next"] == 7
    rest = (await client.get("/api/v1/audit", params={"action": "app.", "after": 7})).json()
    assert [e["seq"] for e in rest["entries"]][:2] == [8, 10] and rest["next"] is None
    denied = (await client.get("/api/v1/audit", params={"outcome": "denied"})).json()
    assert {e["action"] for e in denied["entries"]} == {"access.deny"}
    since = (
        await client.get(
            "/api/v1/audit",
            params={
                "since": "2023-11-14T22:15:20Z",
                "until": "1700000360",
                "actor": "user-0@example.com",
            },
        )
    ).json()
    assert [e["seq"] for e in since["entries"]] == [4]
    entry = since["entries"][0]
    assert entry["time"] == "2023-11-14T22:16:20.000000Z"
    assert entry["actor"] == {"kind": "user", "id": "user-0@example.com", "auth": "password"}
    assert set(entry) >= {"prevHash", "entryHash", "leafHash", "requestId", "traceId", "details"}


async def test_a_bad_time_filter_is_a_problem_document(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/audit", params={"since": "yesterday"})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    document = response.json()
    assert document["title"] == "Invalid audit query"
    assert document["errors"][0]["field"] == "since"


async def test_one_entry_and_a_missing_one(
    client: httpx.AsyncClient, audit: AuditLog, clock: FakeClock, make_event: Any
) -> None:
    await fill(audit, clock, make_event, 3)
    assert (await client.get("/api/v1/audit/2")).json()["seq"] == 2
    missing = await client.get("/api/v1/audit/99")
    assert missing.status_code == 404
    assert missing.json()["type"] == "https://courtyard.dev/problems/audit-entry-not-found"


async def test_proofs_and_the_latest_checkpoint_verify_client_side(
    client: httpx.AsyncClient, audit: AuditLog, clock: FakeClock, make_event: Any
) -> None:
    assert (await client.get("/api/v1/audit/checkpoints/latest")).status_code == 404
    await fill(audit, clock, make_event, 25)
    proof = (await client.get("/api/v1/audit/23/proof")).json()  # past the last checkpoint
    assert proof["treeSize"] == 25 and proof["leafIndex"] == 22
    assert verify_inclusion(
        bytes.fromhex(proof["leafHash"]),
        proof["leafIndex"],
        proof["treeSize"],
        [bytes.fromhex(h) for h in proof["auditPath"]],
        bytes.fromhex(proof["root"]),
    )
    latest = (await client.get("/api/v1/audit/checkpoints/latest")).json()
    assert latest["treeSize"] == 25 and latest["root"] == proof["root"]
    checkpoint = Checkpoint.from_document(latest)
    assert checkpoint.signature_ok(load_public_key(latest["publicKey"]))
    assert checkpoint.signature_ok(load_public_key(latest["publicKeyPem"]))


async def test_archived_entries_are_gone_not_missing(
    client: httpx.AsyncClient, audit: AuditLog, clock: FakeClock, make_event: Any
) -> None:
    await fill(audit, clock, make_event, 25)
    segment = await audit.archive(before_seq=15)
    assert segment is not None  # each minute of fill() passed the 10 s checkpoint interval
    response = await client.get("/api/v1/audit/3")
    assert response.status_code == 410
    assert response.json()["file"] == segment.file == "000000000001-000000000014.jsonl.gz"
    assert (await client.get("/api/v1/audit/3/proof")).status_code == 410


async def test_verify_and_export(
    client: httpx.AsyncClient, audit: AuditLog, clock: FakeClock, make_event: Any, tmp_path: Path
) -> None:
    await fill(audit, clock, make_event, 12)
    report = (await client.get("/api/v1/audit/verify")).json()
    assert report["ok"] is True and report["entries"] == 12
    response = await client.get("/api/v1/audit/export")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    path = tmp_path / "export.jsonl"
    path.write_bytes(response.content)
    result = verify_export(path, audit.public_key)
    assert result.ok and result.entries == 12 and result.tree_size == 12, result
