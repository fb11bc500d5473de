"""Retention without deletion, and exports: both stream the whole trail out as JSON Lines.

Archiving moves old entries to a gzip segment file and deletes them from the database only
once the file is durable; the Merkle subtrees they leave behind stay, so proofs still work.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from courtyard.audit._checkpoints import document_line
from courtyard.audit._errors import AuditError
from courtyard.audit._events import EntryRow
from courtyard.audit._export import (
    Malformed,
    entry_document,
    header_document,
    read_segment,
    segment_name,
    write_segment,
)
from courtyard.audit._proofs import archive_nodes
from courtyard.audit._store import ArchiveSegment, AuditStore
from courtyard.audit._verify import page_rows


def archive_entries(
    store: AuditStore, archive_dir: Path, before_seq: int, now_us: int
) -> ArchiveSegment | None:
    """Archive the entries below ``before_seq`` up to the last checkpoint boundary under it."""
    head = store.head()
    boundary = max(
        (c for c in store.checkpoints() if c.tree_size < before_seq),
        key=lambda c: c.tree_size,
        default=None,
    )
    if boundary is None or boundary.tree_size <= head.archived_through:
        return None
    first, last = head.archived_through + 1, boundary.tree_size
    nodes = archive_nodes(boundary)
    rows = itertools.takewhile(lambda row: row.seq <= last, page_rows(store.entries, first - 1))
    checked = _contiguous(rows, first, last)
    name = segment_name(first, last)
    digest = write_segment(archive_dir / name, checked)
    segment = ArchiveSegment(first, last, name, digest, now_us)
    store.archive(segment, nodes)
    return segment


def _contiguous(rows: Iterator[EntryRow], first: int, last: int) -> Iterator[EntryRow]:
    """``rows`` unchanged, refusing to archive a trail with a hole in it."""
    expected = first
    for row in rows:
        if row.seq != expected:
            raise AuditError(f"cannot archive: entry {expected} is missing from the store")
        expected += 1
        yield row
    if expected != last + 1:
        raise AuditError(f"cannot archive: the store ends at {expected - 1}, not {last}")


def export_lines(
    store: AuditStore,
    archive_dir: Path,
    public_key: Ed25519PublicKey,
    tree_size: int,
    now_us: int,
) -> Iterator[str]:
    """Header, entries 1..``tree_size`` (archived ones too), then checkpoints up to it."""
    yield document_line(header_document(public_key, tree_size, now_us))
    after = 0
    for segment in store.archives():
        for row in read_segment(archive_dir / segment.file):
            if isinstance(row, Malformed):
                raise AuditError(f"cannot export: {row.message}")
            if row.seq > tree_size:
                break
            yield document_line(entry_document(row))
        after = segment.last_seq
    for row in page_rows(store.entries, after):
        if row.seq > tree_size:
            break
        yield document_line(entry_document(row))
    for checkpoint in store.checkpoints():
        if checkpoint.tree_size <= tree_size:
            yield document_line(checkpoint.document())
