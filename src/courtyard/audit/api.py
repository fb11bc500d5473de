"""The audit trail's part of the control-plane REST API (``/api/v1/audit``) and its errors.

Entries, proofs, checkpoints, a verification run, the export, and archiving (retention moves
old entries to verifiable segment files; it never deletes). Who may call it
(platform admins and auditors) is the node's middleware's decision. Audit errors become RFC
9457 problem documents here and only here (``problem_for``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from courtyard.audit._errors import (
    AuditClosed,
    AuditError,
    AuditEventInvalid,
    AuditQueryInvalid,
    AuditWriteFailed,
    EntryArchived,
    EntryNotFound,
    ProofUnavailable,
)
from courtyard.audit._events import Actor, AuditEvent
from courtyard.audit._keys import public_key_b64
from courtyard.audit._log import AuditLog
from courtyard.core import problem

__all__ = ["parse_time", "problem_for", "router"]

PROBLEM_JSON = "application/problem+json"
NDJSON = "application/x-ndjson"


def parse_time(value: str | None, field: str) -> float | None:
    """An RFC 3339 timestamp (``Z`` or an offset) or seconds since the epoch, as epoch seconds."""
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise AuditQueryInvalid(
            field, f"{value!r} is neither RFC 3339 (2024-05-01T12:00:00Z) nor epoch seconds"
        ) from None
    if moment.tzinfo is None:
        raise AuditQueryInvalid(field, f"{value!r} needs a time zone (Z or +hh:mm)")
    return moment.timestamp()


def router(audit: AuditLog) -> APIRouter:
    """Routes under ``/api/v1/audit``; AuditErrors propagate to the node's handlers."""
    api = APIRouter(prefix="/api/v1/audit", tags=["audit"])

    @api.get("", summary="List audit entries, oldest first, filtered")
    async def list_entries(
        actor: str | None = None,
        action: Annotated[str | None, Query(description='Exact, or a prefix ending in "."')] = None,
        target: str | None = None,
        outcome: str | None = None,
        since: Annotated[str | None, Query(description="RFC 3339 or epoch seconds")] = None,
        until: Annotated[str | None, Query(description="RFC 3339 or epoch seconds")] = None,
        after: Annotated[int, Query(ge=0, description="Return entries after this seq")] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        entries = await audit.query(
            actor=actor,
            action=action,
            target=target,
            outcome=outcome,
            since=parse_time(since, "since"),
            until=parse_time(until, "until"),
            after_seq=after,
            limit=limit,
        )
        return {
            "entries": [entry.document() for entry in entries],
            "next": entries[-1].seq if len(entries) == limit else None,
        }

    @api.get("/checkpoints/latest", summary="The latest signed checkpoint and the public key")
    async def latest_checkpoint() -> Any:
        checkpoint = audit.latest_checkpoint
        if checkpoint is None:
            document = problem(404, "No checkpoint", "the audit trail has no signed checkpoint yet")
            return JSONResponse(dict(document), status_code=404, media_type=PROBLEM_JSON)
        return {
            **checkpoint.document(),
            "publicKey": public_key_b64(audit.public_key),
            "publicKeyPem": audit.public_key_pem,
        }

    @api.get("/verify", summary="Verify the whole trail now (hash chain, Merkle roots, signatures)")
    async def verify_trail() -> dict[str, Any]:
        report = await audit.verify()
        return report.document()

    @api.get("/export", summary="The trail as JSON Lines, verifiable offline")
    async def export() -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            # aclosing: a client that hangs up must not leave the export holding its lock.
            async with aclosing(audit.export_lines()) as lines:
                async for line in lines:
                    yield (line + "\n").encode("utf-8")

        return StreamingResponse(
            body(),
            media_type=NDJSON,
            headers={"Content-Disposition": 'attachment; filename="courtyard-audit.jsonl"'},
        )

    @api.post("/archive", summary="Archive entries below a sequence number (retention)")
    async def archive(
        request: Request, before: Annotated[int, Query(ge=2, description="first seq kept")]
    ) -> dict[str, Any]:
        segment = await audit.archive(before)
        actor = getattr(request.state, "actor", None)
        await audit.record(
            AuditEvent(
                actor=actor if isinstance(actor, Actor) else Actor(kind="system", id="courtyard"),
                action="audit.archive",
                target="audit",
                outcome="success",
                reason=None if segment else "nothing old enough to archive",
                request_id=request.headers.get("x-request-id"),
                details={
                    "before": before,
                    "first": segment.first_seq if segment else None,
                    "last": segment.last_seq if segment else None,
                },
            )
        )
        if segment is None:
            return {"archived": None}
        return {
            "archived": {
                "firstSeq": segment.first_seq,
                "lastSeq": segment.last_seq,
                "file": segment.file,
                "sha256": segment.sha256,
            }
        }

    @api.get("/{seq}", summary="One audit entry")
    async def get_entry(seq: int) -> dict[str, Any]:
        entry = await audit.entry(seq)
        return entry.document()

    @api.get("/{seq}/proof", summary="Inclusion proof of an entry in the latest checkpoint")
    async def get_proof(seq: int) -> dict[str, Any]:
        proof = await audit.proof(seq)
        return proof.document()

    return api


def problem_for(error: AuditError) -> tuple[int, dict[str, Any]]:
    """The HTTP status and RFC 9457 problem document for an audit error."""
    detail = str(error)
    match error:
        case EntryNotFound():
            return 404, dict(problem(404, "Audit entry not found", detail, seq=error.seq))
        case EntryArchived():
            document = problem(410, "Audit entry archived", detail, seq=error.seq)
            return 410, {**document, "file": error.file}
        case ProofUnavailable():
            return 409, dict(problem(409, "Proof unavailable", detail, seq=error.seq))
        case AuditQueryInvalid():
            errors = [{"field": error.field, "message": error.message}]
            return 422, dict(problem(422, "Invalid audit query", detail, errors=errors))
        case AuditEventInvalid():
            errors = [{"field": error.field, "message": error.message}]
            return 422, dict(problem(422, "Invalid audit event", detail, errors=errors))
        case AuditClosed() | AuditWriteFailed():
            return 503, dict(problem(503, "Audit trail unavailable", detail))
        case _:
            return 500, dict(problem(500, "Audit trail error", detail))
