"""Durable records of started processes, so that a node killed with -9 cleans up after itself.

A pid alone is not an identity (pids are reused), so each record also keeps the process start
time (``/proc/<pid>/stat`` field 22, proc(5)) and the boot id: a process is "ours" only if all
three still match. Members of an instance's process group that outlived their leader are
recognised by pgid and session id (setsid(2): the leader's pid names both) plus a start time
not before the leader's.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger("courtyard.runtime")

_PROC = Path("/proc")


@dataclass(frozen=True)
class InstanceRecord:
    """One started process of one instance."""

    id: str
    app: str
    revision: int
    pid: int
    pgid: int
    start_ticks: int  # /proc/<pid>/stat field 22: start time in clock ticks since boot
    boot_id: str
    node_id: str
    started_at: float  # wall time, for people
    node_pid: int = 0  # the node process that started it, and that process's start ticks
    node_start_ticks: int = 0


def node_is_running(record: InstanceRecord, *, proc: Path = _PROC) -> bool:
    """True when the node process that wrote ``record`` still runs and is not this process.

    Such a record belongs to a live node sharing the data directory: not an orphan.
    """
    if record.node_pid <= 0 or record.node_pid == os.getpid():
        return False
    if record.boot_id and record.boot_id != boot_id():
        return False
    stat = read_stat(record.node_pid, proc)
    return stat is not None and not stat.is_zombie and stat.start_ticks == record.node_start_ticks


@dataclass(frozen=True)
class ProcStat:
    """The few fields of ``/proc/<pid>/stat`` the cleanup needs."""

    pid: int
    state: str
    pgid: int
    sid: int
    start_ticks: int

    @property
    def is_zombie(self) -> bool:
        return self.state in ("Z", "X")


def read_stat(pid: int, proc: Path = _PROC) -> ProcStat | None:
    """Parse ``/proc/<pid>/stat``; None when the process is gone."""
    try:
        raw = (proc / str(pid) / "stat").read_bytes().decode("ascii", "replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError, NotADirectoryError):
        return None
    # Field 2 (comm) is in parentheses and may itself contain spaces or ')'.
    fields = raw[raw.rfind(")") + 2 :].split()
    # fields[0] is field 3 (state); field N is fields[N - 3].
    return ProcStat(
        pid=pid,
        state=fields[0],
        pgid=int(fields[2]),
        sid=int(fields[3]),
        start_ticks=int(fields[19]),
    )


def start_ticks(pid: int) -> int:
    """The start time of ``pid`` in clock ticks since boot (0 when unreadable)."""
    stat = read_stat(pid)
    return stat.start_ticks if stat is not None else 0


def boot_id() -> str:
    """This boot's id (proc(5): /proc/sys/kernel/random/boot_id); '' when unknown."""
    try:
        return (_PROC / "sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def write_record(folder: Path, record: InstanceRecord) -> None:
    """Write ``record`` durably: temp file, fsync, rename, fsync of the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{record.id}.json"
    temp = folder / f".{record.id}.json.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, json.dumps(asdict(record), sort_keys=True).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, final)
    _fsync_dir(folder)


def remove_record(folder: Path, instance_id: str) -> None:
    """Forget an instance whose processes are gone for good."""
    with contextlib.suppress(FileNotFoundError):
        (folder / f"{instance_id}.json").unlink()
        _fsync_dir(folder)


def read_records(folder: Path) -> list[InstanceRecord]:
    """Every record in ``folder``; unreadable ones are logged and removed."""
    if not folder.is_dir():
        return []
    records: list[InstanceRecord] = []
    for path in sorted(folder.glob("*.json")):
        try:
            records.append(InstanceRecord(**json.loads(path.read_text())))
        except (OSError, ValueError, TypeError) as exc:
            log.warning("ignoring unreadable instance record %s: %s", path, exc)
            path.unlink(missing_ok=True)
    for temp in folder.glob(".*.tmp"):
        temp.unlink(missing_ok=True)
    return records


def find_leftovers(
    records: Sequence[InstanceRecord], *, proc: Path = _PROC
) -> dict[str, list[int]]:
    """For each record, the live processes of its instance: its leader and its group.

    Empty for a record of another boot (everything it named is gone) and for one whose pid now
    belongs to a different process, which the kernel allows only once nothing is left in the
    old group or session.
    """
    current_boot = boot_id()
    running = [
        stat
        for pid in _all_pids(proc)
        if (stat := read_stat(pid, proc)) is not None and not stat.is_zombie
    ]
    found: dict[str, list[int]] = {}
    for record in records:
        found[record.id] = []
        if record.boot_id and current_boot and record.boot_id != current_boot:
            continue
        leader = read_stat(record.pid, proc)
        if leader is not None and leader.start_ticks != record.start_ticks:
            continue
        found[record.id] = [
            stat.pid
            for stat in running
            if stat.pgid == record.pgid
            and stat.sid == record.pgid
            and stat.start_ticks >= record.start_ticks
        ]
    return found


def signal_pids(pids: Iterable[int], sig: int) -> None:
    """Send ``sig`` to each pid that still exists."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def alive(pids: Iterable[int], proc: Path = _PROC) -> list[int]:
    """The pids that still run (zombies count as gone: nothing of theirs runs any more)."""
    result = []
    for pid in pids:
        stat = read_stat(pid, proc)
        if stat is not None and not stat.is_zombie:
            result.append(pid)
    return result


def _all_pids(proc: Path) -> list[int]:
    try:
        return [int(name) for name in os.listdir(proc) if name.isdigit()]
    except OSError:
        return []


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
