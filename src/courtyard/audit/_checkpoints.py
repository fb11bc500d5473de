"""Signed checkpoints: the Merkle root of the first N entries, with the time and the signer.

A checkpoint commits to every entry before it. Copies go to the database and, fsynced, to a
JSON Lines file beside it, so restoring an older database cannot also restore older checkpoints.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from courtyard.audit._canonical import canonical_json
from courtyard.audit._events import rfc3339
from courtyard.audit._files import append_line
from courtyard.audit._keys import SigningKey, signature_ok
from courtyard.audit._merkle import CompactRange

_T = TypeVar("_T")

# The "log" member of every signed body: a signature over something else never verifies.
LOG_NAME = "courtyard-audit"
CHECKPOINT_VERSION = 1


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The signed head of the trail at ``tree_size`` entries; hashes hex, signature base64.

    ``frontier`` (the compact range at that size) is kept by the store to resume appending;
    it is not signed and not part of the document.
    """

    tree_size: int
    time_us: int
    root: str
    entry_hash: str
    key_id: str
    signature: str
    frontier: tuple[str, ...] = field(default=(), compare=False, repr=False)

    def signed_bytes(self) -> bytes:
        """The RFC 8785 bytes the Ed25519 signature covers."""
        return canonical_json(
            {
                "entryHash": self.entry_hash,
                "keyId": self.key_id,
                "log": LOG_NAME,
                "root": self.root,
                "time": self.time_us,
                "treeSize": self.tree_size,
                "v": CHECKPOINT_VERSION,
            }
        )

    def signature_ok(self, public_key: Ed25519PublicKey) -> bool:
        """Whether the signature is valid for ``public_key``."""
        return signature_ok(public_key, self.signature, self.signed_bytes())

    def document(self) -> dict[str, Any]:
        """The JSON form used by the API, the checkpoints file and exports."""
        return {
            "type": "checkpoint",
            "v": CHECKPOINT_VERSION,
            "log": LOG_NAME,
            "treeSize": self.tree_size,
            "time": self.time_us,
            "timeText": rfc3339(self.time_us),
            "root": self.root,
            "entryHash": self.entry_hash,
            "keyId": self.key_id,
            "signature": self.signature,
        }

    @classmethod
    def from_document(cls, document: Any) -> Checkpoint:
        """Parse :meth:`document`'s form; raises ``ValueError`` naming what is wrong."""
        if not isinstance(document, dict):
            raise ValueError("a checkpoint is a JSON object")
        if document.get("log", LOG_NAME) != LOG_NAME or document.get("v", 1) != 1:
            raise ValueError("not a version 1 courtyard-audit checkpoint")
        return cls(
            tree_size=_member(document, "treeSize", int),
            time_us=_member(document, "time", int),
            root=_member(document, "root", str),
            entry_hash=_member(document, "entryHash", str),
            key_id=_member(document, "keyId", str),
            signature=_member(document, "signature", str),
        )


def _member(document: dict[str, Any], name: str, kind: type[_T]) -> _T:
    value = document.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"checkpoint member {name!r} is missing or not a {kind.__name__}")
    return value


def sign_checkpoint(
    key: SigningKey, frontier: CompactRange, entry_hash: bytes, time_us: int
) -> Checkpoint:
    """A checkpoint over the tree ``frontier`` covers, signed with ``key``."""
    unsigned = Checkpoint(
        tree_size=frontier.size,
        time_us=time_us,
        root=frontier.root().hex(),
        entry_hash=entry_hash.hex(),
        key_id=key.key_id,
        signature="",
        frontier=tuple(h.hex() for h in frontier.hashes),
    )
    return Checkpoint(
        tree_size=unsigned.tree_size,
        time_us=unsigned.time_us,
        root=unsigned.root,
        entry_hash=unsigned.entry_hash,
        key_id=unsigned.key_id,
        signature=key.sign(unsigned.signed_bytes()),
        frontier=unsigned.frontier,
    )


def document_line(document: dict[str, Any]) -> str:
    """One compact JSON line, members sorted (stable diffs, easy ``grep``)."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def append_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """Append ``checkpoint`` to the external checkpoints file, fsynced."""
    append_line(path, document_line(checkpoint.document()))


def read_checkpoints(path: Path) -> tuple[list[Checkpoint], list[str]]:
    """The checkpoints in ``path`` and one message per line that is not one.

    A last line without its newline is a write a crash cut short, and is skipped.
    """
    checkpoints: list[Checkpoint] = []
    problems: list[str] = []
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return checkpoints, problems
    except (OSError, UnicodeDecodeError) as exc:
        return checkpoints, [f"{path}: cannot read: {exc}"]
    lines = text.split("\n")
    lines.pop()  # "" after the last newline, or the torn last line
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            checkpoints.append(Checkpoint.from_document(json.loads(line)))
        except ValueError as exc:
            problems.append(f"{path.name} line {number}: {exc}")
    return checkpoints, problems
