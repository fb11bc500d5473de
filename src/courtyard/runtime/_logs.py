"""Instance output to size-rotated files, line by line as the app wrote it.

The supervisor reads the child's pipe itself (rather than handing the child a file) so that a
full disk or a chatty app never blocks the app on an unread pipe and rotation needs no
cooperation from the app. Rotation is logrotate's numbering: ``x.log`` → ``x.log.1`` → ….
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

# A line longer than this is written in pieces rather than held in memory until its newline.
MAX_LINE_BYTES = 64 * 1024


class RotatingLogWriter:
    """Appends to ``path``; when the next line would pass ``max_bytes``, rotates first.

    Rotation happens only between lines, so a line is never split across files (a single line
    bigger than ``max_bytes`` gets a file of its own). At most ``backups`` old files are kept.
    """

    def __init__(self, path: Path, *, max_bytes: int, backups: int) -> None:
        self.path = path
        self._max_bytes = max(1, max_bytes)
        self._backups = max(0, backups)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("ab", buffering=0)
        self._size = self._file.tell()

    def write_lines(self, lines: Iterable[bytes]) -> None:
        """Write whole lines (each normally ending in ``\\n``), rotating between them."""
        block: list[bytes] = []
        block_size = 0
        for line in lines:
            if self._size + block_size + len(line) > self._max_bytes and self._size + block_size:
                self._write(block)
                block, block_size = [], 0
                self._rotate()
            block.append(line)
            block_size += len(line)
        self._write(block)

    def close(self) -> None:
        """Close the current file (idempotent)."""
        self._file.close()

    @property
    def closed(self) -> bool:
        return self._file.closed

    def _write(self, block: list[bytes]) -> None:
        if block and not self._file.closed:
            data = b"".join(block)
            self._file.write(data)
            self._size += len(data)

    def _rotate(self) -> None:
        self._file.close()
        if self._backups == 0:
            self.path.unlink(missing_ok=True)
        else:
            self.path.with_name(f"{self.path.name}.{self._backups}").unlink(missing_ok=True)
            for n in range(self._backups - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{n}")
                if older.exists():
                    older.replace(self.path.with_name(f"{self.path.name}.{n + 1}"))
            if self.path.exists():
                self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        self._file = self.path.open("ab", buffering=0)
        self._size = 0


class LogSink:
    """Takes raw chunks from a pipe and hands whole lines to a writer.

    One sink per process run; the writer lives as long as the instance, across restarts.
    """

    def __init__(
        self,
        writer: RotatingLogWriter,
        *,
        stream: str = "stdout",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._writer = writer
        self._partial = b""
        self._stream = stream.encode()
        self._clock = clock

    def write(self, data: bytes) -> None:
        """Take a chunk as read from the pipe."""
        data = self._partial + data
        cut = data.rfind(b"\n") + 1
        lines = data[:cut].splitlines(keepends=True)
        self._partial = data[cut:]
        stamp = cri_prefix(self._clock(), self._stream)
        stamped = [stamp + b"F " + line for line in lines]
        if len(self._partial) >= MAX_LINE_BYTES:
            stamped.append(stamp + b"P " + self._partial + b"\n")  # a piece of a longer line
            self._partial = b""
        if stamped:
            self._writer.write_lines(stamped)

    def close(self) -> None:
        """The pipe closed: write what is left of an unfinished last line."""
        if self._partial:
            stamp = cri_prefix(self._clock(), self._stream)
            self._writer.write_lines([stamp + b"F " + self._partial + b"\n"])
            self._partial = b""


# Kubernetes' CRI log format: "<RFC 3339 time, UTC> <stream> <F|P> <content>" per line, so
# `courtyard logs --since` knows when each line was written whatever the app prints.
_CRI = re.compile(rb"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z) (stdout|stderr) ([FP]) ")


def cri_prefix(now: float, stream: bytes = b"stdout") -> bytes:
    """The prefix of a line written at ``now`` (Unix seconds), up to the tag."""
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return stamp.encode() + b"Z " + stream + b" "


def parse_log_line(line: bytes) -> tuple[float | None, bytes]:
    """(time written, content) of a stored line; (None, line) for a line without a stamp."""
    match = _CRI.match(line)
    if match is None:
        return None, line
    written = datetime.strptime(match[1].decode(), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return written.timestamp(), line[match.end() :]


def log_files_of(folder: Path, id_pattern: str = r".+") -> list[Path]:
    """Current and rotated log files under ``folder``, oldest first.

    Only files named ``<id>.log`` or ``<id>.log.<n>`` count, with ``<id>`` matching the
    regex ``id_pattern`` (another part of the node may keep its own logs nearby).

    Files are ordered by last write, and for equal times by rotation number (``.3`` before
    ``.1`` before the current file).
    """
    if not folder.is_dir():
        return []
    name_pattern = re.compile(rf"(?:{id_pattern})\.log(?:\.(\d+))?")
    found: list[tuple[int, int, str, Path]] = []
    for entry in os.scandir(folder):
        match = name_pattern.fullmatch(entry.name)
        if not match or not entry.is_file():
            continue
        number = int(match.group(1) or 0)
        found.append((entry.stat().st_mtime_ns, -number, entry.name, Path(entry.path)))
    return [path for *_, path in sorted(found)]


def tail_lines(path: Path, count: int, *, max_bytes: int = 16 * 1024) -> list[str]:
    """The last ``count`` lines of a file (decoded leniently), reading at most ``max_bytes``."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except OSError:
        return []
    lines = data.splitlines()
    if size > max_bytes and lines:
        lines = lines[1:]  # the first one is probably cut
    kept = lines[-count:] if count > 0 else []
    return [parse_log_line(line)[1].decode("utf-8", "replace") for line in kept]
