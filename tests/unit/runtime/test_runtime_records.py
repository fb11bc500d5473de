"""Orphan records: durable, and matched to processes by pid, start time and process group."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from courtyard.runtime._records import (
    InstanceRecord,
    boot_id,
    find_leftovers,
    read_records,
    read_stat,
    remove_record,
    start_ticks,
    write_record,
)

SLEEPER = (
    "import subprocess, sys, time; "
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
    "print('up', flush=True); time.sleep(60)"
)


def record_for(pid: int, **changes: object) -> InstanceRecord:
    values: dict[str, object] = {
        "id": "web-1-abcdef",
        "app": "web",
        "revision": 1,
        "pid": pid,
        "pgid": pid,
        "start_ticks": start_ticks(pid),
        "boot_id": boot_id(),
        "node_id": "node-a",
        "started_at": 1.0,
    }
    values.update(changes)
    return InstanceRecord(**values)  # type: ignore[arg-type]


@pytest.fixture
def group() -> Iterator[subprocess.Popen[bytes]]:
    """A process leading its own group, with a child in that group."""
    leader = subprocess.Popen(
        [sys.executable, "-c", SLEEPER], start_new_session=True, stdout=subprocess.PIPE
    )
    assert leader.stdout is not None
    assert leader.stdout.readline() == b"up\n"
    yield leader
    # The group outlives a reaped leader while a member is left, so its id is still ours.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(leader.pid, 9)
    leader.wait()
    leader.stdout.close()


def test_records_round_trip(tmp_path: Path) -> None:
    record = record_for(os.getpid())
    write_record(tmp_path, record)
    assert json.loads((tmp_path / "web-1-abcdef.json").read_text())["pid"] == os.getpid()
    assert read_records(tmp_path) == [record]
    remove_record(tmp_path, record.id)
    remove_record(tmp_path, record.id)  # twice is fine
    assert read_records(tmp_path) == []


def test_unreadable_records_are_dropped(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "odd.json").write_text('{"id": "x"}')
    (tmp_path / ".half.json.tmp").write_text("{")
    assert read_records(tmp_path) == []
    assert list(tmp_path.iterdir()) == []
    assert read_records(tmp_path / "missing") == []


def test_stat_parses_odd_command_names(tmp_path: Path) -> None:
    (tmp_path / "77").mkdir()
    fields = ["S", "1", "70", "70"] + ["0"] * 15 + ["12345"] + ["0"] * 10
    (tmp_path / "77" / "stat").write_text("77 (evil) name (x) " + " ".join(fields) + "\n")
    stat = read_stat(77, tmp_path)
    assert stat is not None
    assert (stat.state, stat.pgid, stat.sid, stat.start_ticks) == ("S", 70, 70, 12345)
    assert read_stat(78, tmp_path) is None


def test_finds_the_leader_and_its_group(group: subprocess.Popen[bytes]) -> None:
    pids = find_leftovers([record_for(group.pid)])["web-1-abcdef"]
    assert group.pid in pids
    assert len(pids) == 2  # the leader and its child


def test_a_reused_pid_is_not_ours(group: subprocess.Popen[bytes]) -> None:
    record = record_for(group.pid, start_ticks=start_ticks(group.pid) - 1)
    assert find_leftovers([record]) == {"web-1-abcdef": []}


def test_a_record_of_another_boot_names_nothing(group: subprocess.Popen[bytes]) -> None:
    record = record_for(group.pid, boot_id="another-boot")
    assert find_leftovers([record]) == {"web-1-abcdef": []}


def test_group_members_outlive_their_leader(group: subprocess.Popen[bytes]) -> None:
    record = record_for(group.pid)
    os.kill(group.pid, 9)
    group.wait()  # the leader is gone for good; its child is still in the group
    pids = find_leftovers([record])["web-1-abcdef"]
    assert len(pids) == 1
    assert pids[0] != group.pid
