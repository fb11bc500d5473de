"""An app's phase and message, derived from its instances: pure, so every case is testable.

Precedence follows what an operator needs to see first: a stop explains everything; then a
crash-loop; then a failed rollout with nothing serving; then a rollout in progress. "degraded"
means fewer ready instances than desired while nothing else is going on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from courtyard.runtime._models import AppPhase


@dataclass(frozen=True)
class PhaseInputs:
    """What the phase depends on."""

    is_stopped: bool
    has_failed: bool  # the last rollout failed and no older revision serves
    is_rolling_out: bool
    serving: int  # instances of the serving set (ready or not)
    desired: int
    ready: int
    is_crash_looping: bool


def derive_phase(inputs: PhaseInputs) -> AppPhase:
    """The single word the API shows for an app."""
    if inputs.is_stopped:
        return "stopped"
    if inputs.is_crash_looping:
        return "crash-loop"
    if inputs.has_failed and inputs.ready == 0:
        return "failed"
    if inputs.is_rolling_out:
        return "rolling-out" if inputs.serving else "starting"
    if inputs.ready >= inputs.desired:
        return "running"
    return "degraded"


def describe_wait(seconds: float | None) -> str:
    """'next try in 30 s' (or 'starting again now')."""
    if seconds is None or seconds <= 0:
        return "starting again now"
    return f"next try in {seconds:.0f} s" if seconds >= 1 else f"next try in {seconds:.1f} s"


def crash_loop_message(instance_id: str, failure: str, restarts: int, wait: float | None) -> str:
    """E.g. 'instance web-2-ab12cd exited with code 1 (restarted 5 times in a row); crash-loop,
    next try in 30 s'."""
    times = "once" if restarts == 1 else f"{restarts} times"
    return (
        f"instance {instance_id} {failure} (restarted {times} in a row); "
        f"crash-loop, {describe_wait(wait)}"
    )


def join_notes(notes: Sequence[str]) -> str:
    """Non-empty notes, each once, in order, joined by '; '."""
    seen: list[str] = []
    for note in notes:
        if note and note not in seen:
            seen.append(note)
    return "; ".join(seen)
