"""`courtyard logs --grep --since --timestamps`: which stored (CRI-format) lines are shown."""

from __future__ import annotations

import pytest

from courtyard.lifecycle.api import LogFilter

NOW = 1_700_000_000.0
OLD = b"2023-11-14T21:13:20.000000Z stdout F GET /old 200\n"  # an hour before NOW
NEW = b"2023-11-14T22:12:20.000000Z stderr F POST /new 500\n"  # a minute before NOW


def test_everything_without_a_filter_and_stamps_removed() -> None:
    wanted = LogFilter.of(None, None, NOW)
    assert wanted.show(OLD, False) == b"GET /old 200\n"
    assert wanted.show(b"unstamped line\n", False) == b"unstamped line\n"
    assert wanted.show(NEW, True) == b"2023-11-14T22:12:20.000000Z POST /new 500\n"


@pytest.mark.parametrize(
    ("grep", "since", "shown"),
    [
        ("POST", None, [NEW]),
        (r"\b[45]\d\d$", None, [NEW]),
        (None, "10m", [NEW]),
        (None, "2h", [OLD, NEW]),
        (None, "2023-11-14T22:00:00Z", [NEW]),
        ("GET", "10m", []),
    ],
)
def test_grep_and_since(grep: str | None, since: str | None, shown: list[bytes]) -> None:
    wanted = LogFilter.of(grep, since, NOW)
    assert [line for line in (OLD, NEW) if wanted.show(line, False) is not None] == shown


@pytest.mark.parametrize(
    ("grep", "since", "words"),
    [
        ("(unclosed", None, "not a regular expression"),
        (None, "yesterday", 'like "10m"'),
        (None, "2023-11-14T22:00:00", "time zone"),
    ],
)
def test_bad_queries_say_what_is_wrong(grep: str | None, since: str | None, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        LogFilter.of(grep, since, NOW)
