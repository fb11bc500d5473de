"""Durable writes outside the database: what an fsync-before-acknowledge trail needs of files."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(folder: Path) -> None:
    """Make new or renamed entries of ``folder`` durable (POSIX: fsync the directory)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def append_line(path: Path, line: str) -> None:
    """Append one line to ``path`` and fsync it (and the folder when the file is new).

    A last line without its newline is a write a crash cut short, never a complete record:
    it is cut off first, so it cannot glue itself to the new line.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    is_new = not path.exists()
    with path.open("ab+") as file:
        end = file.seek(0, os.SEEK_END)
        if end:
            start = max(0, end - 65536)
            file.seek(start)
            tail = file.read()
            if not tail.endswith(b"\n"):
                file.truncate(start + tail.rfind(b"\n") + 1)
        file.write(line.encode("utf-8") + b"\n")
        file.flush()
        os.fsync(file.fileno())
    if is_new:
        fsync_dir(path.parent)
