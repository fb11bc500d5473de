"""``courtyard audit``: read, prove and verify the audit trail.

Everything goes through the node's API except ``verify --from-export``, which checks an
export file offline with nothing but the public key: the auditor's path.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from courtyard.audit import (
    AuditError,
    Checkpoint,
    VerifyReport,
    load_public_key,
    verify_export,
    verify_inclusion,
)
from courtyard.cli._client import ApiClient, CliError, resolve_target
from courtyard.cli._terminal import AsJson, DataDir, Url, err, fail, out, print_json

audit = typer.Typer(
    name="audit",
    help="Read, prove and verify the tamper-evident audit trail.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
_OUTCOME_STYLE = {"success": "green", "failure": "yellow", "denied": "red"}


def _get(url: str | None, data_dir: Path, path: str, **params: Any) -> Any:
    api = ApiClient(resolve_target(url, data_dir))
    try:
        return api.request("GET", path, params={k: v for k, v in params.items() if v is not None})
    except CliError as exc:
        fail(str(exc), exc.details)
    finally:
        api.close()


def _report(document: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(document)
    if document.get("ok"):
        if not as_json:
            out.print(Text.assemble(("✓ ", "green"), str(document.get("message", "verified"))))
        return
    err.print(Text(str(document.get("message", "the audit trail does not verify"))), soft_wrap=True)
    raise typer.Exit(1)


def _public_key(value: str | None) -> str | None:
    """--public-key is a PEM file, or the key itself (base64 or PEM text)."""
    if value is None:
        return None
    candidate = Path(value)
    try:
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8")
    except OSError as exc:
        fail(f"cannot read {value}: {exc.strerror}")
    return value


@audit.command("verify")
def verify_command(
    from_export: Annotated[
        Path | None,
        typer.Option("--from-export", help="Verify this export file offline (no node needed)."),
    ] = None,
    public_key: Annotated[
        str | None,
        typer.Option("--public-key", help="The key you trust: a PEM file, or base64/PEM text."),
    ] = None,
    checkpoints: Annotated[
        Path | None,
        typer.Option("--checkpoints", help="A checkpoints.jsonl you trust (reveals truncation)."),
    ] = None,
    url: Url = None,
    data_dir: DataDir = Path(".courtyard"),
    as_json: AsJson = False,
) -> None:
    """Check the hash chain, every Merkle root and every signature; exit 1 if broken."""
    if from_export is None:
        _report(_get(url, data_dir, "/api/v1/audit/verify"), as_json)
        return
    if not from_export.is_file():
        fail(f"{from_export}: no such file")
    key = _public_key(public_key)
    try:
        report: VerifyReport = verify_export(from_export, key, checkpoints_file=checkpoints)
    except (AuditError, OSError) as exc:
        fail(str(exc))
    if key is None and not as_json:
        err.print("note: using the key in the export's header; pass --public-key to pin it")
    _report(report.document(), as_json)


@audit.command("list")
def list_command(
    actor: Annotated[str | None, typer.Option(help="Actor id.")] = None,
    action: Annotated[str | None, typer.Option(help='Action, or a prefix ending in ".".')] = None,
    target: Annotated[str | None, typer.Option(help="Target.")] = None,
    outcome: Annotated[str | None, typer.Option(help="success, failure or denied.")] = None,
    since: Annotated[str | None, typer.Option(help="RFC 3339 time or epoch seconds.")] = None,
    until: Annotated[str | None, typer.Option(help="RFC 3339 time or epoch seconds.")] = None,
    after: Annotated[int, typer.Option(help="Only entries after this seq.")] = 0,
    limit: Annotated[int, typer.Option(help="At most this many entries (≤ 1000).")] = 50,
    url: Url = None,
    data_dir: DataDir = Path(".courtyard"),
    as_json: AsJson = False,
) -> None:
    """List audit entries, oldest first."""
    page = _get(
        url,
        data_dir,
        "/api/v1/audit",
        actor=actor,
        action=action,
        target=target,
        outcome=outcome,
        since=since,
        until=until,
        after=after,
        limit=limit,
    )
    entries = page["entries"]
    if as_json:
        print_json(page)
        return
    if not entries:
        out.print("No audit entries match.")
        return
    table = Table(box=None, header_style="bold")
    for column in ("SEQ", "TIME (UTC)", "ACTOR", "ACTION", "TARGET", "OUTCOME", "REASON"):
        table.add_column(column, overflow="fold")  # an audit view never hides characters
    for entry in entries:
        actor_doc = entry["actor"]
        table.add_row(
            str(entry["seq"]),
            Text(entry["time"][:19].replace("T", " ")),
            Text(f"{actor_doc['kind']}:{actor_doc['id']}"),
            Text(entry["action"]),
            Text(entry["target"]),
            Text(entry["outcome"], style=_OUTCOME_STYLE.get(entry["outcome"], "")),
            Text(entry.get("reason") or "-"),
        )
    out.print(table)
    if page.get("next") is not None:
        out.print(Text(f"More: --after {page['next']}", style="dim"))


@audit.command("show")
def show_command(
    seq: int, url: Url = None, data_dir: DataDir = Path(".courtyard"), as_json: AsJson = False
) -> None:
    """Show one audit entry with its hashes."""
    entry = _get(url, data_dir, f"/api/v1/audit/{seq}")
    if as_json:
        print_json(entry)
        return
    actor_doc = entry["actor"]
    auth = f" ({actor_doc['auth']})" if actor_doc.get("auth") else ""
    rows = [
        ("seq", str(entry["seq"])),
        ("time", entry["time"]),
        ("actor", f"{actor_doc['kind']}:{actor_doc['id']}{auth}"),
        ("action", entry["action"]),
        ("target", entry["target"]),
        ("outcome", entry["outcome"]),
        ("reason", entry.get("reason") or "-"),
        ("request id", entry.get("requestId") or "-"),
        ("trace id", entry.get("traceId") or "-"),
        ("details", json.dumps(entry["details"], sort_keys=True, ensure_ascii=False)),
        ("prev hash", entry["prevHash"]),
        ("entry hash", entry["entryHash"]),
        ("leaf hash", entry["leafHash"]),
    ]
    table = Table(box=None, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for name, value in rows:
        table.add_row(name, Text(str(value)))
    out.print(table)


@audit.command("export")
def export_command(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
    url: Url = None,
    data_dir: DataDir = Path(".courtyard"),
) -> None:
    """Write the whole trail as JSON Lines (header, entries, signed checkpoints)."""
    api = ApiClient(resolve_target(url, data_dir))
    target = output.with_name(output.name + ".partial") if output is not None else None
    try:
        sink = target.open("wb") if target is not None else sys.stdout.buffer
        try:
            for chunk in api.stream_lines("/api/v1/audit/export", {}):
                sink.write(chunk)
            sink.flush()
            if target is not None:
                os.fsync(sink.fileno())
        finally:
            if target is not None:
                sink.close()
        if target is not None and output is not None:
            target.replace(output)  # a half-written export never carries the final name
            err.print(f"Wrote {output}")
    except CliError as exc:
        fail(str(exc), exc.details)
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror}")
    finally:
        api.close()


@audit.command("archive")
def archive_command(
    before: Annotated[int, typer.Option(help="Archive entries below this sequence number.")],
    url: Url = None,
    data_dir: DataDir = Path(".courtyard"),
    as_json: AsJson = False,
) -> None:
    """Move old entries to a gzip segment file (retention archives, never deletes)."""
    api = ApiClient(resolve_target(url, data_dir))
    try:
        result = api.request("POST", "/api/v1/audit/archive", params={"before": before})
    except CliError as exc:
        fail(str(exc), exc.details)
    finally:
        api.close()
    if as_json:
        print_json(result)
        return
    segment = result.get("archived")
    if segment is None:
        out.print("Nothing to archive: no signed checkpoint below that sequence number yet.")
    else:
        out.print(
            f"Archived entries {segment['firstSeq']} to {segment['lastSeq']} into {segment['file']}"
        )


@audit.command("proof")
def proof_command(
    seq: int,
    public_key: Annotated[
        str | None,
        typer.Option("--public-key", help="Also check the checkpoint's signature with this key."),
    ] = None,
    url: Url = None,
    data_dir: DataDir = Path(".courtyard"),
    as_json: AsJson = False,
) -> None:
    """Print entry SEQ's inclusion proof against the latest checkpoint, checked locally."""
    key = _public_key(public_key)
    try:
        pinned = load_public_key(key) if key is not None else None
    except AuditError as exc:
        fail(str(exc))
    proof = _get(url, data_dir, f"/api/v1/audit/{seq}/proof")
    try:
        valid = verify_inclusion(
            bytes.fromhex(proof["leafHash"]),
            proof["leafIndex"],
            proof["treeSize"],
            [bytes.fromhex(h) for h in proof["auditPath"]],
            bytes.fromhex(proof["root"]),
        )
        if pinned is not None:
            checkpoint = Checkpoint.from_document(proof["checkpoint"])
            valid = valid and checkpoint.signature_ok(pinned)
            valid = valid and (checkpoint.root, checkpoint.tree_size) == (
                proof["root"],
                proof["treeSize"],
            )
    except (KeyError, TypeError, ValueError):
        valid = False
    if as_json:
        print_json({**proof, "valid": valid})
    else:
        out.print(f"entry       {proof['seq']} (leaf index {proof['leafIndex']})")
        out.print(f"tree size   {proof['treeSize']}")
        out.print(f"leaf hash   {proof['leafHash']}")
        out.print(f"root        {proof['root']}")
        out.print("audit path")
        for step in proof["auditPath"]:
            out.print(f"  {step}")
    if not valid:
        err.print(f"the proof for entry {seq} does not lead to the root: do not trust it")
        raise typer.Exit(1)
    if not as_json:
        signed = " (signature checked)" if pinned is not None else ""
        out.print(Text.assemble(("✓ ", "green"), f"the proof leads to the signed root{signed}"))
