"""An app's phase and messages, derived without any process."""

from __future__ import annotations

import dataclasses
import signal

import pytest

from courtyard.runtime._instances import describe_exit
from courtyard.runtime._phases import (
    PhaseInputs,
    crash_loop_message,
    derive_phase,
    describe_wait,
    join_notes,
)

RUNNING = PhaseInputs(
    is_stopped=False,
    has_failed=False,
    is_rolling_out=False,
    serving=2,
    desired=2,
    ready=2,
    is_crash_looping=False,
)


@pytest.mark.parametrize(
    ("changes", "phase"),
    [
        ({}, "running"),
        ({"ready": 1}, "degraded"),
        ({"ready": 0, "serving": 0, "desired": 0}, "running"),
        ({"is_rolling_out": True}, "rolling-out"),
        ({"is_rolling_out": True, "serving": 0, "ready": 0}, "starting"),
        ({"is_crash_looping": True, "ready": 1}, "crash-loop"),
        ({"is_crash_looping": True, "is_rolling_out": True}, "crash-loop"),
        ({"has_failed": True, "serving": 0, "ready": 0}, "failed"),
        ({"has_failed": True, "ready": 0}, "failed"),
        ({"has_failed": True, "ready": 1}, "degraded"),
        ({"has_failed": True, "ready": 0, "is_crash_looping": True}, "crash-loop"),
        ({"is_stopped": True, "is_crash_looping": True}, "stopped"),
    ],
)
def test_phase(changes: dict[str, object], phase: str) -> None:
    assert derive_phase(dataclasses.replace(RUNNING, **changes)) == phase  # type: ignore[arg-type]


def test_crash_loop_message_says_what_and_when() -> None:
    message = crash_loop_message("web-2-ab12cd", "exited with code 1", 5, 29.6)
    assert message == (
        "instance web-2-ab12cd exited with code 1 (restarted 5 times in a row); "
        "crash-loop, next try in 30 s"
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "starting again now"),
        (0.0, "starting again now"),
        (0.25, "next try in 0.2 s"),
        (4.4, "next try in 4 s"),
    ],
)
def test_describe_wait(seconds: float | None, text: str) -> None:
    assert describe_wait(seconds) == text


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (0, "exited with code 0"),
        (3, "exited with code 3"),
        (-signal.SIGKILL, "was killed by SIGKILL"),
        (-signal.SIGTERM, "was killed by SIGTERM"),
        (-200, "was killed by signal 200"),
    ],
)
def test_describe_exit(code: int, text: str) -> None:
    assert describe_exit(code) == text


def test_join_notes_drops_empty_and_repeated() -> None:
    assert join_notes(["a", "", "b", "a"]) == "a; b"
