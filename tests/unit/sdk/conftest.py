"""Fixtures of the SDK tests: a hand-moved wall clock and a minter that uses it."""

from __future__ import annotations

import pytest

from courtyard.sdk.testing import IdentityMinter, ManualClock


@pytest.fixture
def now() -> ManualClock:
    return ManualClock()


@pytest.fixture
def minter(now: ManualClock) -> IdentityMinter:
    """Assertions for the app "expenses" from the platform at http://platform.test."""
    return IdentityMinter("http://platform.test", "expenses", clock=now)
