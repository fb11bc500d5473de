"""SLO arithmetic: error budgets, burn rates and the multiwindow, multi-burn-rate alert rules.

Pure functions over numbers. The rules follow the Google SRE workbook, "Alerting on SLOs",
§6 (multiwindow, multi-burn-rate alerts): for a 30-day SLO, page when 2% of the budget burns
in 1 hour (checked over 1h and 5m) or 5% in 6 hours (6h and 30m); open a ticket when 10% burns
in 1 day (1d and 2h) or in 3 days (3d and 6h). The burn-rate factor of a rule is
``budget share * SLO window / long window``, so other windows get their own factors (Sloth
computes them the same way): 14.4, 6, 3, 1 for 30 days; 13.44, 5.6, 2.8, 0.933 for 28 days.
"""

from __future__ import annotations

from dataclasses import dataclass

from courtyard.contracts import Severity, SloSpec

HOUR = 3600.0
MINUTE = 60.0

# (severity, share of the budget, long window, short window): SRE workbook table 5-8.
_WORKBOOK: tuple[tuple[Severity, float, float, float], ...] = (
    ("page", 0.02, 1 * HOUR, 5 * MINUTE),
    ("page", 0.05, 6 * HOUR, 30 * MINUTE),
    ("ticket", 0.10, 24 * HOUR, 2 * HOUR),
    ("ticket", 0.10, 72 * HOUR, 6 * HOUR),
)

# Windows reported as burn rates (status, metrics), by label.
BURN_WINDOWS: dict[str, float] = {
    "5m": 5 * MINUTE,
    "30m": 30 * MINUTE,
    "1h": HOUR,
    "2h": 2 * HOUR,
    "6h": 6 * HOUR,
    "1d": 24 * HOUR,
    "3d": 72 * HOUR,
}


@dataclass(frozen=True, slots=True)
class BurnRule:
    """Fire when the burn rate over both ``long`` and ``short`` (seconds) reaches ``factor``."""

    severity: Severity
    long: float
    short: float
    factor: float
    budget_share: float  # the share of the window's budget that burns in ``long`` at ``factor``


def burn_rules(window: float) -> tuple[BurnRule, ...]:
    """The four rules for an SLO over ``window`` seconds."""
    return tuple(
        BurnRule(severity, long, short, share * window / long, share)
        for severity, share, long, short in _WORKBOOK
    )


def burn_rate(total: int, bad: int, budget: float) -> float:
    """How many times faster than "exactly the budget over the window" errors arrive."""
    if total <= 0 or budget <= 0:
        return 0.0
    return (bad / total) / budget


def budget_remaining(total: int, bad: int, budget: float) -> float:
    """The share of the error budget left (event-weighted): 1 untouched, 0 spent, < 0 over."""
    if total <= 0:
        return 1.0
    allowed = budget * total
    return 1.0 - bad / allowed


@dataclass(frozen=True, slots=True)
class SloStatus:
    """An SLO as of now: events over its window, the SLI, the budget left and burn rates."""

    spec: SloSpec
    total: int
    bad: int
    sli: float | None  # share of good events; None with no events
    budget_remaining: float
    burn: dict[str, float]  # BURN_WINDOWS label -> burn rate


def window_label(seconds: float) -> str:
    """ "5m", "6h", "3d" for a window of whole minutes, hours or days."""
    if seconds % 86400 == 0:
        return f"{int(seconds // 86400)}d"
    if seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    return f"{int(seconds // 60)}m"
