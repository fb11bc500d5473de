"""Rotating instance logs: whole lines, bounded size, oldest first."""

from __future__ import annotations

import os
from pathlib import Path

from courtyard.runtime._logs import (
    MAX_LINE_BYTES,
    LogSink,
    RotatingLogWriter,
    log_files_of,
    parse_log_line,
    tail_lines,
)


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_rotates_between_lines_and_keeps_the_newest(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    writer = RotatingLogWriter(path, max_bytes=30, backups=2)
    lines = [f"line {n:02d} ......\n".encode() for n in range(10)]  # 15 bytes each
    writer.write_lines(lines)
    writer.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.log", "a.log.1", "a.log.2"]
    assert lines_of(path) == lines[8:10]
    assert lines_of(tmp_path / "a.log.1") == lines[6:8]
    assert lines_of(tmp_path / "a.log.2") == lines[4:6]


def test_a_line_longer_than_the_limit_gets_a_file_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    writer = RotatingLogWriter(path, max_bytes=10, backups=3)
    writer.write_lines([b"short\n", b"a much longer line\n", b"tail\n"])
    writer.close()
    assert path.read_bytes() == b"tail\n"
    assert (tmp_path / "a.log.1").read_bytes() == b"a much longer line\n"
    assert (tmp_path / "a.log.2").read_bytes() == b"short\n"


def test_no_backups_means_truncation(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    writer = RotatingLogWriter(path, max_bytes=8, backups=0)
    writer.write_lines([b"first\n", b"second\n"])
    writer.close()
    assert [p.name for p in tmp_path.iterdir()] == ["a.log"]
    assert path.read_bytes() == b"second\n"


def test_appends_to_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(b"from before\n")
    writer = RotatingLogWriter(path, max_bytes=1000, backups=1)
    writer.write_lines([b"more\n"])
    writer.close()
    assert path.read_bytes() == b"from before\nmore\n"


STAMP = b"2023-11-14T22:13:20.250000Z stdout "


def test_sink_joins_chunks_into_stamped_lines_and_flushes_the_rest_on_close(
    tmp_path: Path,
) -> None:
    path = tmp_path / "a.log"
    writer = RotatingLogWriter(path, max_bytes=len(STAMP) + 20, backups=5)
    sink = LogSink(writer, clock=lambda: 1700000000.25)
    for chunk in (b"hel", b"lo wor", b"ld\nsecond li", b"ne\nno newline"):
        sink.write(chunk)
    # Only whole lines so far, each in Kubernetes' CRI format; rotation never split a line.
    assert (tmp_path / "a.log.1").read_bytes() == STAMP + b"F hello world\n"
    assert path.read_bytes() == STAMP + b"F second line\n"
    sink.close()
    writer.close()
    assert path.read_bytes() == STAMP + b"F no newline\n"
    assert parse_log_line(path.read_bytes()) == (1700000000.25, b"no newline\n")
    assert parse_log_line(b"an old line without a stamp\n") == (
        None,
        b"an old line without a stamp\n",
    )


def test_sink_does_not_hold_an_endless_line(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    writer = RotatingLogWriter(path, max_bytes=10 * MAX_LINE_BYTES, backups=1)
    sink = LogSink(writer, clock=lambda: 1700000000.25)
    sink.write(b"x" * (MAX_LINE_BYTES + 5))
    # A piece of a line: tagged P (partial), as CRI logs do.
    assert path.read_bytes() == STAMP + b"P " + b"x" * (MAX_LINE_BYTES + 5) + b"\n"
    writer.close()


def test_files_are_listed_oldest_first(tmp_path: Path) -> None:
    names = ["b.log", "a.log.2", "a.log", "a.log.1", "b.log.1", "other.txt"]
    for n, name in enumerate(["a.log.2", "a.log.1", "b.log.1", "a.log", "b.log"]):
        (tmp_path / name).write_text(name)
        os.utime(tmp_path / name, ns=(n * 10**9, n * 10**9))
    (tmp_path / "other.txt").write_text("not a log")
    assert set(names) >= {p.name for p in tmp_path.iterdir()}
    assert [p.name for p in log_files_of(tmp_path)] == [
        "a.log.2",
        "a.log.1",
        "b.log.1",
        "a.log",
        "b.log",
    ]
    assert log_files_of(tmp_path / "missing") == []


def test_equal_times_order_by_rotation_number(tmp_path: Path) -> None:
    for name in ("x.log", "x.log.1", "x.log.2"):
        (tmp_path / name).write_text(name)
        os.utime(tmp_path / name, ns=(10**9, 10**9))
    assert [p.name for p in log_files_of(tmp_path)] == ["x.log.2", "x.log.1", "x.log"]


def test_tail(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_text("".join(f"line {n}\n" for n in range(100)))
    assert tail_lines(path, 3) == ["line 97", "line 98", "line 99"]
    assert tail_lines(path, 3, max_bytes=20) == ["line 98", "line 99"]
    assert tail_lines(tmp_path / "missing", 3) == []
