"""Fixtures of the runtime tests: a bundle with the test app, a control folder, a supervisor.

The helpers are in ``runtime_testkit.py`` (this folder is on pytest's ``pythonpath``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from runtime_testkit import (
    RecordingTraffic,
    make_config,
    no_children,
    wait_until,
    write_app,
)

from courtyard.runtime import RuntimeConfig, Supervisor


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """A folder holding the test HTTP app (app.py)."""
    return write_app(tmp_path / "bundle")


@pytest.fixture
def control(tmp_path: Path) -> Path:
    folder = tmp_path / "control"
    folder.mkdir()
    return folder


@pytest.fixture
def config(tmp_path: Path) -> RuntimeConfig:
    return make_config(tmp_path / "data")


@pytest.fixture
def traffic() -> RecordingTraffic:
    return RecordingTraffic()


@pytest.fixture
async def supervisor(config: RuntimeConfig, traffic: RecordingTraffic) -> AsyncIterator[Supervisor]:
    """A started supervisor; after the test, it is closed and no child of ours may remain."""
    sup = Supervisor(config, traffic)
    traffic.supervisor = sup
    await sup.start()
    try:
        yield sup
    finally:
        await sup.aclose()
        await wait_until(no_children, timeout=5, what="every child process to be gone")
