"""Checking a trail from its data alone: the hash chain, the Merkle roots and the signatures.

The verifier trusts nothing stored beside the entries (hashes, checkpoints, frontiers): it
recomputes everything and names the first sequence number where the trail stops adding up.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from courtyard.audit._canonical import entry_bytes
from courtyard.audit._checkpoints import Checkpoint, read_checkpoints
from courtyard.audit._events import EntryRow
from courtyard.audit._export import EXPORT_FORMAT, Malformed, read_segment, rows_from_lines
from courtyard.audit._keys import PublicKeyLike, key_id, load_public_key
from courtyard.audit._merkle import CompactRange
from courtyard.audit._store import ArchiveSegment, AuditStore

# The prev_hash of entry 1.
GENESIS: Final = bytes(32)

Problem = Literal[
    "changed",  # an entry's bytes differ from what was hashed
    "deleted",  # a sequence number is missing
    "inserted",  # an entry that was never appended sits in the chain
    "reordered",  # entries are out of order
    "chain",  # the hash chain is broken in a way none of the above explains
    "rewritten",  # entries were replaced and re-hashed: only the Merkle root shows it
    "truncated",  # the trail ends before its own signed checkpoints
    "rolled-back",  # the trail is older than the external checkpoints file
    "signature",  # a checkpoint's signature (or key) is not the log's
    "malformed",  # a row or line cannot be read as an entry
]

# Where a checkpoint came from: the trail's own (store or export) or the outside file.
Source = Literal["store", "export", "checkpoints file"]


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The outcome of a verification: ``ok``, or the first bad seq and what is wrong there."""

    ok: bool
    entries: int
    checkpoints: int
    tree_size: int
    root: str | None
    key_id: str
    first_bad_seq: int | None = None
    problem: Problem | None = None
    detail: str | None = None

    def __str__(self) -> str:
        if self.ok:
            return (
                f"audit trail verified: {self.entries} entries, {self.checkpoints} signed "
                f"checkpoints, latest at {self.tree_size} entries"
            )
        where = f" at seq {self.first_bad_seq}" if self.first_bad_seq is not None else ""
        return f"audit trail broken{where}: {self.detail}"

    def document(self) -> dict[str, Any]:
        document = asdict(self)
        return {
            "ok": document["ok"],
            "entries": document["entries"],
            "checkpoints": document["checkpoints"],
            "treeSize": document["tree_size"],
            "root": document["root"],
            "keyId": document["key_id"],
            "firstBadSeq": document["first_bad_seq"],
            "problem": document["problem"],
            "detail": document["detail"],
            "message": str(self),
        }


@dataclass(slots=True)
class _Finding:
    seq: int | None
    problem: Problem
    detail: str


def _earliest(found: _Finding | None, seq: int | None, problem: Problem, detail: str) -> _Finding:
    if found is None or (seq is not None and (found.seq is None or seq < found.seq)):
        return _Finding(seq, problem, detail)
    return found


def check_trail(
    rows: Iterable[EntryRow | Malformed],
    signed: Sequence[tuple[Checkpoint, Source]],
    public_key: Ed25519PublicKey,
    notes: Sequence[str] = (),
) -> VerifyReport:
    """Verify ``rows`` (seq order, from 1) against the checkpoints in ``signed``.

    Checkpoints from the trail's own ``store``/``export`` that it does not reach mean a
    truncated tail; ones only the ``checkpoints file`` holds mean a rollback.
    """
    public_id = key_id(public_key)
    found: _Finding | None = None
    for note in notes:
        found = _earliest(found, None, "malformed", note)
    marks: dict[int, list[tuple[Checkpoint, Source]]] = {}
    for checkpoint, source in signed:
        if checkpoint.key_id != public_id or not checkpoint.signature_ok(public_key):
            found = _earliest(
                found,
                checkpoint.tree_size,
                "signature",
                f"the checkpoint at {checkpoint.tree_size} entries in the {source} is not "
                "signed by this log's key",
            )
        else:
            marks.setdefault(checkpoint.tree_size, []).append((checkpoint, source))
    stop_at = found.seq if found is not None and found.seq is not None else None
    walk = _walk(rows, marks, stop_at)
    if walk.finding is not None:
        found = _earliest(found, walk.finding.seq, walk.finding.problem, walk.finding.detail)
    size = walk.size
    # Only checkpoints with a good signature count as evidence of how long the trail was.
    good = [(size, source) for size, found_here in marks.items() for _, source in found_here]
    own = max((size for size, source in good if source != "checkpoints file"), default=0)
    outside = max((size for size, source in good if source == "checkpoints file"), default=0)
    if walk.finished and own > size:
        found = _earliest(
            found,
            size + 1,
            "truncated",
            f"the trail's own checkpoint signs {own} entries but only {size} are there "
            "(a truncated tail)",
        )
    elif walk.finished and outside > size:
        found = _earliest(
            found,
            size + 1,
            "rolled-back",
            f"the checkpoints file has a signed checkpoint at {outside} entries but the trail "
            f"stops at {size} (its own latest checkpoint: {own}): rolled back to an older copy",
        )
    latest = walk.latest
    return VerifyReport(
        ok=found is None,
        entries=size,
        checkpoints=walk.checkpoints,
        tree_size=latest.tree_size if latest else 0,
        root=latest.root if latest else None,
        key_id=public_id,
        first_bad_seq=found.seq if found else None,
        problem=found.problem if found else None,
        detail=found.detail if found else None,
    )


@dataclass(slots=True)
class _Walk:
    size: int = 0
    finished: bool = False  # read to the end without a finding or a stop
    checkpoints: int = 0
    latest: Checkpoint | None = None
    finding: _Finding | None = None


def _walk(
    rows: Iterable[EntryRow | Malformed],
    marks: dict[int, list[tuple[Checkpoint, Source]]],
    stop_at: int | None,
) -> _Walk:
    """Stream the entries once: chain, leaf hashes, and the root at every checkpoint."""
    walk = _Walk(finished=True)
    frontier = CompactRange()
    sha256 = hashlib.sha256
    prev_digest = GENESIS
    prev_hex = GENESIS.hex()
    previous: EntryRow | None = None
    last_mark = 0
    expected = 1
    source: Iterator[EntryRow | Malformed] = iter(rows)
    current = next(source, None)
    while current is not None:
        if stop_at is not None and expected >= stop_at:
            walk.finished = False
            break
        following = next(source, None)
        if isinstance(current, Malformed):
            walk.finding = _Finding(expected, "malformed", current.message)
            break
        row = current
        after = following if isinstance(following, EntryRow) else None
        finding = _misplaced(row, expected, prev_hex, previous, after)
        if finding is not None:
            walk.finding = finding
            break
        try:
            data = entry_bytes(*row[:12])
        except (UnicodeEncodeError, TypeError) as exc:
            walk.finding = _Finding(expected, "malformed", f"entry cannot be encoded ({exc})")
            break
        digest = sha256(prev_digest + data).digest()
        leaf = sha256(b"\x00" + data).digest()
        if digest.hex() != row.entry_hash or leaf.hex() != row.leaf_hash:
            walk.finding = _Finding(expected, "changed", "entry hash mismatch (a changed byte)")
            break
        frontier.append(leaf)
        if expected in marks:
            root = frontier.root().hex()
            for checkpoint, origin in marks[expected]:
                if checkpoint.root != root or checkpoint.entry_hash != row.entry_hash:
                    walk.finding = _Finding(
                        last_mark + 1,
                        "rewritten",
                        f"entries {last_mark + 1}..{expected} do not match the signed "
                        f"checkpoint at {expected} in the {origin} (entries replaced and "
                        "re-hashed, or a forked history)",
                    )
                    break
                walk.latest = checkpoint
            if walk.finding is not None:
                break
            walk.checkpoints += 1
            last_mark = expected
        prev_digest, prev_hex, previous = digest, row.entry_hash, row
        expected += 1
        current = following
    walk.size = expected - 1
    if walk.finding is not None:
        walk.finished = False
    return walk


def _misplaced(
    row: EntryRow,
    expected: int,
    prev_hex: str,
    previous: EntryRow | None,
    following: EntryRow | None,
) -> _Finding | None:
    """Why ``row`` does not belong at ``expected`` (seq and prev_hash), or None if it does."""
    if row.seq > expected:
        if following is not None and following.seq == expected:
            return _Finding(expected, "reordered", f"entry {expected} comes after {row.seq}")
        missing = f"{expected}" if row.seq == expected + 1 else f"{expected}..{row.seq - 1}"
        return _Finding(expected, "deleted", f"entry {missing} is missing (deleted)")
    if row.seq < expected:
        if previous is not None and row.prev_hash == previous.prev_hash:
            return _Finding(
                previous.seq, "inserted", "an entry was inserted (two claim one predecessor)"
            )
        return _Finding(row.seq, "reordered", f"entry {row.seq} appears again after {expected - 1}")
    if row.prev_hash != prev_hex:
        if previous is not None and row.prev_hash == previous.prev_hash:
            return _Finding(
                previous.seq, "inserted", "an entry was inserted (two claim one predecessor)"
            )
        if following is not None and following.entry_hash == row.prev_hash:
            return _Finding(
                expected, "reordered", f"entries {expected} and {expected + 1} are swapped"
            )
        return _Finding(
            expected,
            "chain",
            f"prev_hash does not link to entry {expected - 1} (an entry before it was deleted, "
            "inserted or re-hashed)",
        )
    return None


def page_rows(fetch: Any, after_seq: int, page: int = 10_000) -> Iterator[EntryRow]:
    """Every entry after ``after_seq`` from ``fetch(after_seq, limit)``, page by page."""
    while True:
        rows = fetch(after_seq, page)
        if not rows:
            return
        yield from rows
        after_seq = rows[-1].seq


def numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    with path.open(encoding="utf-8") as file:
        yield from zip(itertools.count(1), file, strict=False)


def _archived_rows(
    segments: Sequence[ArchiveSegment], archive_dir: Path | None
) -> Iterator[EntryRow | Malformed]:
    for segment in segments:
        if archive_dir is None:
            yield Malformed(
                f"entries {segment.first_seq}..{segment.last_seq} are archived in "
                f"{segment.file}; pass the archive folder to verify them"
            )
            return
        yield from read_segment(archive_dir / segment.file)


def verify(
    store: AuditStore,
    *,
    public_key: PublicKeyLike,
    checkpoints_file: Path | str | None = None,
    archive_dir: Path | str | None = None,
) -> VerifyReport:
    """Verify the whole trail in ``store`` (archived segments included) from its data alone.

    ``checkpoints_file`` (``<data_dir>/audit/checkpoints.jsonl``) adds the checkpoints kept
    outside the database, which is what reveals a rollback to an older copy.
    """
    key = load_public_key(public_key)
    signed: list[tuple[Checkpoint, Source]] = [(c, "store") for c in store.checkpoints()]
    notes: list[str] = []
    if checkpoints_file is not None:
        external, notes = read_checkpoints(Path(checkpoints_file))
        signed += [(c, "checkpoints file") for c in external]
    folder = Path(archive_dir) if archive_dir is not None else None
    rows = itertools.chain(
        _archived_rows(store.archives(), folder), page_rows(store.entries, after_seq=0)
    )
    return check_trail(rows, signed, key, notes)


def verify_export(
    path: Path | str,
    public_key: PublicKeyLike | None = None,
    *,
    checkpoints_file: Path | str | None = None,
) -> VerifyReport:
    """Verify an export file offline, with nothing but the public key.

    Without ``public_key`` the key in the export's header is used, which proves only that the
    file is consistent with itself: pass the key you trust. ``checkpoints_file`` (a copy of
    the node's checkpoints.jsonl, or checkpoints you saved earlier) reveals a cut-short file.
    """
    path = Path(path)
    header, signed_here, notes = _scan_export(path)
    if header is None:
        key = load_public_key(public_key) if public_key is not None else None
        return VerifyReport(
            ok=False,
            entries=0,
            checkpoints=0,
            tree_size=0,
            root=None,
            key_id=key_id(key) if key is not None else "",
            first_bad_seq=None,
            problem="malformed",
            detail=notes[0] if notes else f"{path.name} is not an audit export",
        )
    key = load_public_key(public_key if public_key is not None else header.get("publicKey", ""))
    signed: list[tuple[Checkpoint, Source]] = [(c, "export") for c in signed_here]
    if checkpoints_file is not None:
        external, problems = read_checkpoints(Path(checkpoints_file))
        signed += [(c, "checkpoints file") for c in external]
        notes += problems
    rows = rows_from_lines(numbered_lines(path), path.name)
    return check_trail(rows, signed, key, notes)


def _scan_export(path: Path) -> tuple[dict[str, Any] | None, list[Checkpoint], list[str]]:
    """First pass over an export: its header and its checkpoints."""
    header: dict[str, Any] | None = None
    checkpoints: list[Checkpoint] = []
    notes: list[str] = []
    try:
        for number, line in numbered_lines(path):
            if number > 1 and '"checkpoint"' not in line:
                continue  # an entry line: the second pass reads those
            try:
                document = json.loads(line)
            except ValueError as exc:
                if number == 1:
                    return None, [], [f"{path.name} line 1 is not JSON ({exc})"]
                continue  # reported when the entries are read
            kind = document.get("type") if isinstance(document, dict) else None
            if number == 1:
                if kind != "header" or document.get("format") != EXPORT_FORMAT:
                    return None, [], [f"{path.name} does not start with an export header"]
                header = document
            elif kind == "checkpoint":
                try:
                    checkpoints.append(Checkpoint.from_document(document))
                except ValueError as exc:
                    notes.append(f"{path.name} line {number}: {exc}")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [], [f"cannot read {path}: {exc}"]
    return header, checkpoints, notes
