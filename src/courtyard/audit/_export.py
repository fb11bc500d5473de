"""The JSON Lines form of the trail, for exports and for archived segments.

An export is self-contained: a header with the public key, every entry as the exact object
that was hashed (RFC 8785), then every signed checkpoint. An auditor needs nothing else.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Final, NamedTuple

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from courtyard.audit._canonical import ENTRY_VERSION, canonical_json
from courtyard.audit._checkpoints import document_line
from courtyard.audit._events import AuditEntry, EntryRow, rfc3339
from courtyard.audit._files import fsync_dir
from courtyard.audit._keys import key_id, public_key_b64, public_key_pem

EXPORT_FORMAT: Final = "courtyard-audit/1"
# The members of the hashed entry object, and of its actor (RFC 8785 bytes cover exactly these).
_ENTRY_KEYS = frozenset(
    ("action", "actor", "details", "outcome", "reason", "requestId", "seq", "target", "time")
) | {"traceId", "v"}
_ACTOR_KEYS = frozenset(("auth", "id", "kind"))


class Malformed(NamedTuple):
    """A line (or segment) that is not an entry where the next entry was expected."""

    message: str


def header_document(public_key: Ed25519PublicKey, tree_size: int, time_us: int) -> dict[str, Any]:
    """The first line of an export."""
    return {
        "type": "header",
        "format": EXPORT_FORMAT,
        "canonicalization": "RFC 8785",
        "hash": "SHA-256; entryHash = H(prevHash || bytes), leafHash = H(0x00 || bytes)",
        "publicKey": public_key_b64(public_key),
        "publicKeyPem": public_key_pem(public_key),
        "keyId": key_id(public_key),
        "treeSize": tree_size,
        "exportedAt": rfc3339(time_us),
    }


def entry_document(row: EntryRow) -> dict[str, Any]:
    """One entry line: the hashed object and its three hashes."""
    return {
        "type": "entry",
        "entry": AuditEntry.from_row(row).canonical_object(),
        "prevHash": row.prev_hash,
        "entryHash": row.entry_hash,
        "leafHash": row.leaf_hash,
    }


def _text(value: Any, name: str, *, optional: bool = False) -> Any:
    if (value is None and optional) or isinstance(value, str):
        return value
    raise ValueError(f"{name} is not a string")


def _integer(value: Any, name: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ValueError(f"{name} is not an integer")


def row_from_document(document: Any) -> EntryRow:
    """The stored-row form of an entry line; ``ValueError`` says what does not fit."""
    if not isinstance(document, dict) or document.get("type") != "entry":
        raise ValueError("not an entry line")
    entry = document.get("entry")
    # Exactly the hashed members: anything added would be shown yet not be covered by the hash.
    if not isinstance(entry, dict) or set(entry) != _ENTRY_KEYS:
        raise ValueError("the entry object does not have exactly the hashed members")
    actor = entry["actor"]
    if not isinstance(actor, dict) or set(actor) != _ACTOR_KEYS:
        raise ValueError("the actor object does not have exactly kind, id and auth")
    if entry["v"] != ENTRY_VERSION or not isinstance(entry["details"], dict):
        raise ValueError("not a version 1 entry with a details object")
    return EntryRow(
        seq=_integer(entry["seq"], "seq"),
        time_us=_integer(entry["time"], "time"),
        actor_kind=_text(actor["kind"], "actor.kind"),
        actor_id=_text(actor["id"], "actor.id"),
        actor_auth=_text(actor["auth"], "actor.auth", optional=True),
        action=_text(entry["action"], "action"),
        target=_text(entry["target"], "target"),
        outcome=_text(entry["outcome"], "outcome"),
        reason=_text(entry["reason"], "reason", optional=True),
        request_id=_text(entry["requestId"], "requestId", optional=True),
        trace_id=_text(entry["traceId"], "traceId", optional=True),
        details=canonical_json(entry["details"]).decode("utf-8"),
        prev_hash=_text(document.get("prevHash"), "prevHash"),
        entry_hash=_text(document.get("entryHash"), "entryHash"),
        leaf_hash=_text(document.get("leafHash"), "leafHash"),
    )


def rows_from_lines(lines: Iterable[tuple[int, str]], label: str) -> Iterator[EntryRow | Malformed]:
    """Entry rows from numbered lines; other line types are skipped, broken ones reported."""
    for number, line in lines:
        try:
            document = json.loads(line)
            if isinstance(document, dict) and document.get("type") != "entry":
                continue
            row = row_from_document(document)
        except (ValueError, RecursionError) as exc:
            yield Malformed(f"{label} line {number} is not a valid entry ({exc})")
            return
        yield row


def segment_name(first_seq: int, last_seq: int) -> str:
    return f"{first_seq:012d}-{last_seq:012d}.jsonl.gz"


def write_segment(path: Path, rows: Iterable[EntryRow]) -> str:
    """Write an archive segment (gzip JSON Lines), durably; returns the file's SHA-256 hex.

    The file appears under its name only once complete and fsynced (write, fsync, rename).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with partial.open("wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as archive:
            for row in rows:
                archive.write((document_line(entry_document(row)) + "\n").encode("utf-8"))
        raw.flush()
        os.fsync(raw.fileno())
    partial.replace(path)
    fsync_dir(path.parent)
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_segment(path: Path) -> Iterator[EntryRow | Malformed]:
    """The entries of an archive segment, then a :class:`Malformed` if it breaks off."""
    try:
        with gzip.open(path, "rt", encoding="utf-8") as file:
            yield from rows_from_lines(enumerate(file, start=1), path.name)
    except FileNotFoundError:
        yield Malformed(f"archived segment {path.name} is missing")
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        yield Malformed(f"archived segment {path.name} cannot be read ({exc})")
