"""Tampering with a copy of the database and with an export, every way the threat model names:
each is detected and the report names the sequence number where it happened."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from courtyard.audit import (
    AuditConfig,
    AuditLog,
    SqlAuditStore,
    TrailDamaged,
    TrailRolledBack,
    VerifyReport,
    canonical_json,
    verify,
    verify_export,
)
from courtyard.store import Database

SIZE = 40  # entries; a checkpoint every 10 (the last one signed when the log closes)


@dataclass
class Trail:
    config: AuditConfig
    db_file: Path
    public_key: Any

    def verify(self, *, with_file: bool = True) -> VerifyReport:
        db = Database.open(f"sqlite:///{self.db_file}")
        try:
            return verify(
                SqlAuditStore(db),
                public_key=self.public_key,
                checkpoints_file=self.config.checkpoints_file if with_file else None,
                archive_dir=self.config.archive_dir,
            )
        finally:
            db.close()

    def sql(self, *statements: str) -> None:
        connection = sqlite3.connect(self.db_file)
        try:
            for statement in statements:
                connection.execute(statement)
            connection.commit()
        finally:
            connection.close()

    def row(self, seq: int) -> dict[str, Any]:
        connection = sqlite3.connect(self.db_file)
        connection.row_factory = sqlite3.Row
        try:
            found = connection.execute("SELECT * FROM audit_entries WHERE seq = ?", (seq,))
            return dict(found.fetchone())
        finally:
            connection.close()


async def write(config: AuditConfig, db_file: Path, first: int, count: int, make_event: Any) -> Any:
    db = Database.open(f"sqlite:///{db_file}")
    log = await AuditLog.open(config, SqlAuditStore(db))
    for i in range(first, first + count):
        await log.record(make_event(i))
    await log.aclose()
    db.close()
    return log.public_key


@pytest.fixture
async def trail(tmp_path: Path, make_event: Any) -> Trail:
    config = AuditConfig(tmp_path / "data", checkpoint_every=10)
    db_file = tmp_path / "data" / "courtyard.db"
    public_key = await write(config, db_file, 0, SIZE, make_event)
    return Trail(config, db_file, public_key)


def broken(report: VerifyReport, seq: int, problem: str) -> None:
    assert not report.ok, report
    assert (report.first_bad_seq, report.problem) == (seq, problem), report
    assert str(report).startswith(f"audit trail broken at seq {seq}: ")


def canonical_row(row: dict[str, Any]) -> bytes:
    """The bytes an entry's hashes cover, built from its columns (RFC 8785)."""
    return canonical_json(
        {
            "action": row["action"],
            "actor": {"auth": row["actor_auth"], "id": row["actor_id"], "kind": row["actor_kind"]},
            "details": json.loads(row["details"]),
            "outcome": row["outcome"],
            "reason": row["reason"],
            "requestId": row["request_id"],
            "seq": row["seq"],
            "target": row["target"],
            "time": row["time_us"],
            "traceId": row["trace_id"],
            "v": 1,
        }
    )


def rehash(row: dict[str, Any], prev_hash: str) -> dict[str, Any]:
    data = canonical_row(row)
    return {
        **row,
        "prev_hash": prev_hash,
        "entry_hash": hashlib.sha256(bytes.fromhex(prev_hash) + data).hexdigest(),
        "leaf_hash": hashlib.sha256(b"\x00" + data).hexdigest(),
    }


def insert_sql(row: dict[str, Any]) -> str:
    columns = ", ".join(row)
    values = ", ".join(
        "NULL" if v is None else f"'{v}'" if isinstance(v, str) else str(v) for v in row.values()
    )
    return f"INSERT INTO audit_entries ({columns}) VALUES ({values})"


def test_an_untouched_trail_verifies(trail: Trail) -> None:
    report = trail.verify()
    assert report.ok, report
    assert (report.entries, report.checkpoints, report.tree_size) == (SIZE, 4, SIZE)
    assert (
        str(report)
        == "audit trail verified: 40 entries, 4 signed checkpoints, latest at 40 entries"
    )


# -- the database ----------------------------------------------------------------------------


def test_db_changed_byte(trail: Trail) -> None:
    trail.sql("UPDATE audit_entries SET target = 'app-9' WHERE seq = 17")
    broken(trail.verify(), 17, "changed")
    assert "entry hash mismatch (a changed byte)" in str(trail.verify())


def test_db_changed_byte_in_the_details(trail: Trail) -> None:
    trail.sql("UPDATE audit_entries SET details = replace(details, ':22', ':23') WHERE seq = 23")
    broken(trail.verify(), 23, "changed")


def test_db_deleted_entry(trail: Trail) -> None:
    trail.sql("DELETE FROM audit_entries WHERE seq = 17")
    broken(trail.verify(), 17, "deleted")


def test_db_deleted_entry_with_the_rest_renumbered(trail: Trail) -> None:
    trail.sql(
        "DELETE FROM audit_entries WHERE seq = 17",
        "UPDATE audit_entries SET seq = seq + 1000 WHERE seq > 17",
        "UPDATE audit_entries SET seq = seq - 1001 WHERE seq > 1000",
    )
    broken(trail.verify(), 17, "chain")


def test_db_inserted_entry(trail: Trail) -> None:
    forged = rehash(
        {**trail.row(17), "actor_id": "mallory", "seq": 17}, trail.row(16)["entry_hash"]
    )
    trail.sql(
        "UPDATE audit_entries SET seq = seq + 1000 WHERE seq >= 17",
        "UPDATE audit_entries SET seq = seq - 999 WHERE seq > 1000",
        insert_sql(forged),
    )
    broken(trail.verify(), 17, "inserted")


def test_db_reordered_entries(trail: Trail) -> None:
    trail.sql(
        "UPDATE audit_entries SET seq = -1 WHERE seq = 17",
        "UPDATE audit_entries SET seq = 17 WHERE seq = 18",
        "UPDATE audit_entries SET seq = 18 WHERE seq = -1",
    )
    broken(trail.verify(), 17, "reordered")


def test_db_truncated_tail(trail: Trail) -> None:
    trail.sql("DELETE FROM audit_entries WHERE seq > 33")
    broken(trail.verify(with_file=False), 34, "truncated")
    broken(trail.verify(), 34, "truncated")


def test_db_truncated_tail_and_its_checkpoints(trail: Trail) -> None:
    trail.sql(
        "DELETE FROM audit_entries WHERE seq > 33",
        "DELETE FROM audit_checkpoints WHERE tree_size > 30",
    )
    assert trail.verify(with_file=False).ok  # the database alone cannot tell
    broken(trail.verify(), 34, "rolled-back")  # the file outside it can


async def test_db_rolled_back_to_an_older_copy(tmp_path: Path, make_event: Any) -> None:
    config = AuditConfig(tmp_path / "data", checkpoint_every=10)
    db_file = tmp_path / "data" / "courtyard.db"
    public_key = await write(config, db_file, 0, 20, make_event)
    shutil.copy(db_file, tmp_path / "old.db")  # closed cleanly: no WAL beside it
    await write(config, db_file, 20, 25, make_event)
    shutil.copy(tmp_path / "old.db", db_file)  # the older copy comes back; checkpoints stay
    trail = Trail(config, db_file, public_key)
    assert trail.verify(with_file=False).ok
    report = trail.verify()
    broken(report, 21, "rolled-back")
    assert "the checkpoints file has a signed checkpoint at 45 entries" in str(report)
    db = Database.open(f"sqlite:///{db_file}")
    try:
        with pytest.raises(TrailRolledBack, match="signs 45 entries but the store holds 20"):
            await AuditLog.open(config, SqlAuditStore(db))
    finally:
        db.close()


def test_db_entries_rewritten_with_recomputed_hashes(trail: Trail) -> None:
    rows = [trail.row(seq) for seq in range(1, SIZE + 1)]
    rows[16]["target"] = "covered-up"  # seq 17, then every hash after it recomputed
    statements = []
    prev = rows[15]["entry_hash"]
    for row in rows[16:]:
        fixed = rehash(row, prev)
        prev = fixed["entry_hash"]
        statements.append(
            f"UPDATE audit_entries SET target = '{fixed['target']}', prev_hash = "
            f"'{fixed['prev_hash']}', entry_hash = '{fixed['entry_hash']}', leaf_hash = "
            f"'{fixed['leaf_hash']}' WHERE seq = {row['seq']}"
        )
    trail.sql(*statements)
    report = trail.verify()
    broken(report, 11, "rewritten")  # somewhere in 11..20, the span the next checkpoint signs
    assert "entries 11..20 do not match the signed checkpoint at 20" in str(report)


def test_db_checkpoint_with_a_forged_signature(trail: Trail) -> None:
    trail.sql(
        "UPDATE audit_checkpoints SET signature = (SELECT signature FROM audit_checkpoints "
        "WHERE tree_size = 10) WHERE tree_size = 20"
    )
    broken(trail.verify(with_file=False), 20, "signature")


def test_verifying_with_another_key_fails_at_the_first_checkpoint(trail: Trail) -> None:
    trail.public_key = Ed25519PrivateKey.generate().public_key()
    broken(trail.verify(), 10, "signature")


async def test_archived_trail_verifies_and_a_lost_or_edited_segment_is_caught(
    trail: Trail,
) -> None:
    db = Database.open(f"sqlite:///{trail.db_file}")
    log = await AuditLog.open(trail.config, SqlAuditStore(db))
    segment = await log.archive(before_seq=25)
    await log.aclose()
    db.close()
    assert segment is not None and (segment.first_seq, segment.last_seq) == (1, 20)
    assert trail.verify().ok
    path = trail.config.archive_dir / segment.file
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    lines[6] = lines[6].replace('"target":"app-0"', '"target":"app-7"')
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    broken(trail.verify(), 7, "changed")
    path.unlink()
    report = trail.verify()
    broken(report, 1, "malformed")
    assert "is missing" in str(report)


# -- the export ------------------------------------------------------------------------------


@pytest.fixture
async def export(trail: Trail, tmp_path: Path) -> Path:
    db = Database.open(f"sqlite:///{trail.db_file}")
    log = await AuditLog.open(trail.config, SqlAuditStore(db))
    path = tmp_path / "export.jsonl"
    await log.export(path)
    await log.aclose()
    db.close()
    return path


def lines_of(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def save(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_an_untouched_export_verifies_with_the_public_key_alone(trail: Trail, export: Path) -> None:
    lines = lines_of(export)
    header = json.loads(lines[0])
    assert header["type"] == "header" and header["format"] == "courtyard-audit/1"
    assert sum(json.loads(line)["type"] == "entry" for line in lines) == SIZE
    report = verify_export(export, trail.public_key)
    assert report.ok and report.entries == SIZE and report.checkpoints == 4, report
    assert verify_export(export, header["publicKeyPem"]).ok
    assert verify_export(export, header["publicKey"]).ok
    assert verify_export(export).ok  # with the header's own key


def test_export_changed_byte(trail: Trail, export: Path) -> None:
    lines = lines_of(export)
    lines[17] = lines[17].replace('"outcome":"', '"outcome":"X', 1)  # line 17 holds seq 17
    save(export, lines)
    broken(verify_export(export, trail.public_key), 17, "changed")


def test_export_deleted_line(trail: Trail, export: Path) -> None:
    lines = lines_of(export)
    del lines[17]
    save(export, lines)
    broken(verify_export(export, trail.public_key), 17, "deleted")


def test_export_inserted_line(trail: Trail, export: Path) -> None:
    lines = lines_of(export)
    seventeen = json.loads(lines[17])
    entry = {**seventeen["entry"], "actor": {**seventeen["entry"]["actor"], "id": "mallory"}}
    data = canonical_json(entry)
    forged = {
        "type": "entry",
        "entry": entry,
        "prevHash": seventeen["prevHash"],
        "entryHash": hashlib.sha256(bytes.fromhex(seventeen["prevHash"]) + data).hexdigest(),
        "leafHash": hashlib.sha256(b"\x00" + data).hexdigest(),
    }
    lines.insert(17, json.dumps(forged))
    save(export, lines)
    broken(verify_export(export, trail.public_key), 17, "inserted")


def test_export_an_added_member_is_not_hidden(trail: Trail, export: Path) -> None:
    lines = lines_of(export)
    document = json.loads(lines[17])
    document["entry"]["note"] = "approved by the CEO"
    lines[17] = json.dumps(document)
    save(export, lines)
    broken(verify_export(export, trail.public_key), 17, "malformed")


def test_export_reordered_lines(trail: Trail, export: Path) -> None:
    lines = lines_of(export)
    lines[17], lines[18] = lines[18], lines[17]
    save(export, lines)
    broken(verify_export(export, trail.public_key), 17, "reordered")


def test_export_truncated_tail(trail: Trail, export: Path) -> None:
    lines = lines_of(export)
    save(export, [line for line in lines if json.loads(line).get("entry", {}).get("seq", 0) <= 33])
    broken(verify_export(export, trail.public_key), 34, "truncated")


def test_export_cut_short_entirely_is_caught_with_the_checkpoints_file(
    trail: Trail, export: Path
) -> None:
    lines = lines_of(export)
    save(export, lines[:31])  # the header and entries 1..30, no checkpoint at all
    assert verify_export(export, trail.public_key).ok  # consistent with itself...
    report = verify_export(export, trail.public_key, checkpoints_file=trail.config.checkpoints_file)
    broken(report, 31, "rolled-back")  # ...but not with the checkpoints kept outside


def test_export_garbage_line(trail: Trail, export: Path) -> None:
    lines = lines_of(export)
    lines[5] = lines[5][:40]
    save(export, lines)
    broken(verify_export(export, trail.public_key), 5, "malformed")


def test_a_file_that_is_not_an_export(tmp_path: Path, trail: Trail) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello\n")
    report = verify_export(path, trail.public_key)
    assert not report.ok and report.problem == "malformed" and report.first_bad_seq is None


async def test_the_log_will_not_sign_over_a_tampered_tail(
    tmp_path: Path, make_event: Any, crash: Any
) -> None:
    config = AuditConfig(tmp_path / "data", checkpoint_every=10)
    db_file = tmp_path / "data" / "courtyard.db"
    db = Database.open(f"sqlite:///{db_file}")
    log = await AuditLog.open(config, SqlAuditStore(db))
    for i in range(13):
        await log.record(make_event(i))
    await log.flush()
    crash(log)  # entries 11..13 stay unsigned
    db.close()
    trail = Trail(config, db_file, log.public_key)
    trail.sql("UPDATE audit_entries SET outcome = 'failure' WHERE seq = 12")
    db = Database.open(f"sqlite:///{db_file}")
    try:
        with pytest.raises(TrailDamaged) as caught:
            await AuditLog.open(config, SqlAuditStore(db))
        assert caught.value.seq == 12
        trail.sql(
            "UPDATE audit_entries SET outcome = 'success' WHERE seq = 12",
            "UPDATE audit_checkpoints SET signature = 'AAAA' WHERE tree_size = 10",
        )
        with pytest.raises(TrailDamaged, match="not signed by us"):
            await AuditLog.open(config, SqlAuditStore(db))
    finally:
        db.close()
