"""Fixtures of the runtime tests: a bundle with the test app, a control folder, a supervisor.

The suite runs with ``--import-mode=importlib``, so test modules cannot import a sibling by
name; this conftest loads the helpers of ``runtime_testkit.py`` once as module
``runtime_testkit`` before any test module of this folder is imported.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import pytest

from courtyard.runtime import RuntimeConfig, Supervisor


def _load_testkit() -> ModuleType:
    if "runtime_testkit" in sys.modules:
        return sys.modules["runtime_testkit"]
    spec = importlib.util.spec_from_file_location(
        "runtime_testkit", Path(__file__).with_name("runtime_testkit.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["runtime_testkit"] = module
    spec.loader.exec_module(module)
    return module


_load_testkit()

from runtime_testkit import (  # noqa: E402 (loaded just above)
    RecordingTraffic,
    make_config,
    no_children,
    wait_until,
    write_app,
)


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
