"""One behaviour for every audit store: memory, SQLite and (integration) PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import BigInteger, Integer, String, Text

from courtyard.audit import (
    AppendBatch,
    ArchiveSegment,
    AuditQuery,
    AuditStore,
    AuditWriteFailed,
    Checkpoint,
    EntryRow,
)
from courtyard.audit._sql import archives, checkpoints, entries, nodes
from courtyard.store import metadata


def row(seq: int, **overrides: object) -> EntryRow:
    fields: dict[str, object] = {
        "seq": seq,
        "time_us": 1_000_000 * seq,
        "actor_kind": "user",
        "actor_id": f"user-{seq % 3}",
        "actor_auth": "password" if seq % 2 else None,
        "action": ("app.deploy", "app.stop", "auth.login.failure", "apple.pick")[seq % 4],
        "target": f"app-{seq % 2}",
        "outcome": ("success", "failure", "denied")[seq % 3],
        "reason": None,
        "request_id": f"req-{seq}",
        "trace_id": None,
        "details": f'{{"n":{seq}}}',
        "prev_hash": f"{seq - 1:064x}",
        "entry_hash": f"{seq:064x}",
        "leaf_hash": f"{seq + 1000:064x}",
    }
    fields.update(overrides)
    return EntryRow(**fields)  # type: ignore[arg-type]


def checkpoint(size: int) -> Checkpoint:
    return Checkpoint(
        tree_size=size,
        time_us=size * 10,
        root=f"{size:064x}",
        entry_hash=f"{size:064x}",
        key_id="k" * 64,
        signature="c2lnbmF0dXJl",
        frontier=tuple(f"{size + i:064x}" for i in range(size.bit_count())),
    )


def test_an_empty_store(audit_store: AuditStore) -> None:
    head = audit_store.head()
    assert (head.last_seq, head.archived_through, head.checkpoint) == (0, 0, None)
    assert audit_store.entries(0, 10) == []
    assert audit_store.entry(1) is None
    assert audit_store.checkpoints() == []
    assert audit_store.archives() == []
    assert audit_store.nodes([(8, 0)]) == {}
    assert audit_store.leaves(1, 10) == {}


def test_appends_come_back_in_order_field_for_field(audit_store: AuditStore) -> None:
    first = [row(seq) for seq in range(1, 6)]
    audit_store.append(AppendBatch(first, [(8, 0, b"\x01" * 32)], checkpoint(5)))
    audit_store.append(AppendBatch([row(6, reason="rule: é \u2028", trace_id="t" * 32)]))
    assert audit_store.entries(0, 100) == [
        *first,
        row(6, reason="rule: é \u2028", trace_id="t" * 32),
    ]
    assert audit_store.entries(2, 2) == first[2:4]
    assert audit_store.entry(3) == first[2]
    assert audit_store.entry(7) is None
    head = audit_store.head()
    assert head.last_seq == 6
    assert head.checkpoint == checkpoint(5)
    assert head.checkpoint is not None and head.checkpoint.frontier == checkpoint(5).frontier
    assert audit_store.nodes([(8, 0), (8, 1)]) == {(8, 0): "01" * 32}
    assert audit_store.leaves(2, 4) == {2: f"{1002:064x}", 3: f"{1003:064x}", 4: f"{1004:064x}"}


def test_an_append_that_does_not_continue_the_trail_writes_nothing(audit_store: AuditStore) -> None:
    audit_store.append(AppendBatch([row(1), row(2)]))
    for wrong in ([row(2)], [row(4)], [row(1)]):
        with pytest.raises(AuditWriteFailed, match="does not continue"):
            audit_store.append(AppendBatch(wrong, (), checkpoint(9)))
    assert [r.seq for r in audit_store.entries(0, 10)] == [1, 2]
    assert audit_store.checkpoints() == []


def test_checkpoints_come_back_smallest_first(audit_store: AuditStore) -> None:
    audit_store.append(AppendBatch([row(s) for s in range(1, 4)], (), checkpoint(3)))
    audit_store.append(AppendBatch([row(4)], (), checkpoint(4)))
    audit_store.append(AppendBatch([], (), None))
    assert [c.tree_size for c in audit_store.checkpoints()] == [3, 4]
    with pytest.raises(Exception):  # noqa: B017 - each backend's own duplicate-key error
        audit_store.append(AppendBatch([], (), checkpoint(4)))


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (AuditQuery(), list(range(1, 25))),
        (AuditQuery(actor="user-1"), [s for s in range(1, 25) if s % 3 == 1]),
        (AuditQuery(action="app.deploy"), [s for s in range(1, 25) if s % 4 == 0]),
        (AuditQuery(action="app."), [s for s in range(1, 25) if s % 4 in (0, 1)]),
        (AuditQuery(action="app_"), []),
        (AuditQuery(target="app-1"), [s for s in range(1, 25) if s % 2]),
        (AuditQuery(outcome="denied"), [s for s in range(1, 25) if s % 3 == 2]),
        (AuditQuery(since_us=5_000_000, until_us=9_000_000), [5, 6, 7, 8]),
        (AuditQuery(after_seq=20), [21, 22, 23, 24]),
        (AuditQuery(limit=3), [1, 2, 3]),
        (AuditQuery(actor="user-0", outcome="success", after_seq=6, limit=2), [9, 12]),
    ],
)
def test_query_filters(audit_store: AuditStore, query: AuditQuery, expected: list[int]) -> None:
    audit_store.append(AppendBatch([row(s) for s in range(1, 25)]))
    rows = audit_store.query(query)
    assert [r.seq for r in rows] == expected
    assert all(query.matches(r) for r in rows)


def test_archiving_deletes_entries_and_keeps_nodes(audit_store: AuditStore) -> None:
    audit_store.append(AppendBatch([row(s) for s in range(1, 11)], [(8, 0, b"\x02" * 32)]))
    segment = ArchiveSegment(1, 6, "000000000001-000000000006.jsonl.gz", "ab" * 32, 99)
    audit_store.archive(segment, [(2, 0, b"\x03" * 32), (8, 0, b"\x04" * 32)])
    assert [r.seq for r in audit_store.entries(0, 100)] == [7, 8, 9, 10]
    assert audit_store.archives() == [segment]
    head = audit_store.head()
    assert (head.last_seq, head.archived_through) == (10, 6)
    # Nodes already kept are not replaced.
    assert audit_store.nodes([(2, 0), (8, 0)]) == {(2, 0): "03" * 32, (8, 0): "02" * 32}
    audit_store.archive(ArchiveSegment(7, 10, "x.jsonl.gz", "cd" * 32, 100), [])
    assert audit_store.head().last_seq == 10  # counted from the archives once all are gone
    audit_store.append(AppendBatch([row(11)]))
    assert [r.seq for r in audit_store.entries(0, 100)] == [11]


def test_the_sql_store_reads_the_columns_the_schema_defines() -> None:
    """audit may not import store, so it mirrors the tables; they must stay in step."""
    for mirror in (entries, checkpoints, nodes, archives):
        table = metadata.tables[mirror.name]
        assert [c.name for c in mirror.columns] == [c.name for c in table.columns]
        for column in mirror.columns:
            kind = type(table.columns[column.name].type)
            assert isinstance(column.type, (BigInteger, Integer, String, Text)), column
            assert issubclass(kind, type(column.type)) or isinstance(
                table.columns[column.name].type, type(column.type)
            ), column.name
        assert [c.name for c in mirror.primary_key] == [c.name for c in table.primary_key]
