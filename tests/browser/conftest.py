"""Fixtures of the browser tier: Playwright driving Debian's Chromium (never a downloaded
browser: `playwright install` needs a CDN this machine cannot reach)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, sync_playwright

# Flags the machine's notes ask for: root needs --no-sandbox, and without the
# background-networking switches Chromium keeps dialling hosts the closed network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    """``$COURTYARD_CHROMIUM``, else Debian's /usr/bin/chromium (or chromium on PATH)."""
    configured = os.environ.get("COURTYARD_CHROMIUM")
    if configured:
        return configured
    if os.path.exists("/usr/bin/chromium"):
        return "/usr/bin/chromium"
    return shutil.which("chromium")


@pytest.fixture
def browser() -> Iterator[Browser]:
    """A headless Chromium; skips only when no Chromium is installed."""
    executable = chromium_path()
    if executable is None:
        pytest.skip("chromium is not installed (scripts/install-extras installs Debian's)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()
