"""Single sign-on as a person sees it, in a real browser: a private app sends them to sign
in (password, then a TOTP code), the app greets them by name, the launcher lists only what
they may open, and signing out closes every app again.

The node runs the demo fleet (examples/): expenses (group:finance), notes (group:ops) and
status-board (group:platform).
"""

from __future__ import annotations

import functools
import http.server
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from harness import NodeProcess, wait_for
from playwright.sync_api import Browser, Page, expect

from interop.sso_testkit import create_user, running_node

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DEMO_APPS = {"expenses", "notes", "status-board"}
APP_LINK = re.compile(r"/apps/([a-z0-9-]+)/")


@pytest.fixture
def demo_node(tmp_path: Path) -> Iterator[NodeProcess]:
    with running_node(tmp_path / "node", extra=["--demo"]) as node:

        def all_running() -> bool:
            with node.api() as api:
                apps = api.get("/api/v1/apps").json()
            return {a["name"] for a in apps} >= DEMO_APPS and all(
                a["phase"] == "running" for a in apps
            )

        wait_for(all_running, 120, "the demo apps to run")
        yield node


def path_of(page: Page) -> str:
    return urlsplit(page.url).path


def shot(page: Page, folder: Path, name: str) -> None:
    """A screenshot beside the test's files, to look at when an assertion fails."""
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def test_sign_in_with_totp_open_app_launcher_and_sign_out(
    demo_node: NodeProcess, browser: Browser, tmp_path: Path
) -> None:
    node = demo_node
    dana = create_user(node, "dana@example.com", "Dana Finance", groups=("finance",), totp=True)
    assert dana.totp is not None
    context = browser.new_context(base_url=node.url)
    page = context.new_page()
    try:
        # A private app without a session: the gateway sends the browser to sign in.
        page.goto("/apps/expenses/")
        expect(page).to_have_url(re.compile(r"/login\?"))
        shot(page, tmp_path, "1-login")
        page.locator("input[name=email]").fill(dana.email)
        page.locator("input[name=password]").fill(dana.password)
        page.get_by_role("button", name="Sign in").click()

        # Second step: the code from the authenticator app.
        page.wait_for_selector("input[name=code]")
        shot(page, tmp_path, "2-totp")
        page.locator("input[name=code]").fill(dana.totp.next_code())
        page.get_by_role("button", name="Verify").click()

        # Back where they started, and the app knows who they are.
        page.wait_for_url(re.compile(r"/apps/expenses/"))
        expect(page.get_by_text(f"Hello, {dana.name}")).to_be_visible()
        shot(page, tmp_path, "3-app")

        # The session cookie cannot be read by scripts and does not ride cross-site posts.
        cookies = {c["name"]: c for c in context.cookies()}
        session = cookies.get("courtyard_session")
        assert session is not None, cookies.keys()
        assert session["httpOnly"]
        assert session["sameSite"] in {"Lax", "Strict"}

        # The launcher lists exactly the apps she may open.
        page.goto("/")
        shot(page, tmp_path, "4-launcher")
        hrefs = page.eval_on_selector_all("a[href]", "links => links.map(a => a.href)")
        listed = {m.group(1) for href in hrefs if (m := APP_LINK.search(urlsplit(href).path))}
        assert listed == {"expenses"}, hrefs
        for other in DEMO_APPS - {"expenses"}:
            assert page.get_by_text(other, exact=True).count() == 0

        # Signing out (a confirmation form, POSTed with its CSRF field) closes the apps.
        page.goto("/logout")
        shot(page, tmp_path, "5-logout")
        page.locator("form").filter(has=page.locator("input[name=csrf]")).locator(
            "button, input[type=submit]"
        ).first.click()
        page.wait_for_load_state()
        page.goto("/apps/expenses/")
        expect(page).to_have_url(re.compile(r"/login\?"))
        assert "courtyard_session" not in {c["name"] for c in context.cookies()}
    finally:
        context.close()


def test_a_signed_in_person_outside_the_group_is_refused(
    demo_node: NodeProcess, browser: Browser
) -> None:
    omar = create_user(demo_node, "omar@example.com", "Omar Ops", groups=("ops",))
    context = browser.new_context(base_url=demo_node.url)
    page = context.new_page()
    try:
        page.goto("/apps/notes/")
        page.locator("input[name=email]").fill(omar.email)
        page.locator("input[name=password]").fill(omar.password)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(re.compile(r"/apps/notes/"))
        expect(page.get_by_text(f"Hello, {omar.name}")).to_be_visible()
        response = page.goto("/apps/expenses/")
        assert response is not None and response.status == 403
    finally:
        context.close()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def test_chromium_renders_a_local_page(browser: Browser, tmp_path: Path) -> None:
    """The tooling alone (no node): Debian's Chromium loads and clicks a loopback page."""
    (tmp_path / "index.html").write_text(
        "<title>probe</title><p id=out>Hello, Probe</p>"
        "<button onclick=\"document.getElementById('out').textContent='clicked'\">Go</button>"
    )
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(tmp_path))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{server.server_address[1]}/")
        expect(page.locator("#out")).to_have_text("Hello, Probe")
        page.get_by_role("button", name="Go").click()
        expect(page.locator("#out")).to_have_text("clicked")
        page.close()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
