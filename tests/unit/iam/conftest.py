"""Every IAM store backend for the conformance suite (memory, SQLite, PostgreSQL), and an
:class:`Iam` over a fake clock and a recording audit log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from backends import BACKENDS, sql_database
from courtyard.core import FakeClock
from courtyard.iam import Iam, IamConfig, IamStore, MemoryIamStore, PasswordHasher, SqlIamStore
from fakes import RecordingAudit


@pytest.fixture(params=BACKENDS)
def iam_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[IamStore]:
    """Each IAM store backend, empty."""
    if request.param == "memory":
        yield MemoryIamStore()
        return
    with sql_database(request, tmp_path) as db:
        yield SqlIamStore(db)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=1_700_000_000.0)


@pytest.fixture
def audit() -> RecordingAudit:
    return RecordingAudit()


@pytest.fixture(scope="session")
def hasher() -> PasswordHasher:
    return PasswordHasher(time_cost=2)


@pytest.fixture
def iam(clock: FakeClock, audit: RecordingAudit, hasher: PasswordHasher) -> Iam:
    """A service over the memory store."""
    return Iam(MemoryIamStore(), IamConfig(), audit, clock=clock, hasher=hasher)
