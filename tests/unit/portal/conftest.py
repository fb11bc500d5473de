"""A portal over a real :class:`courtyard.iam.Iam` (memory store, fake clock, recording audit)
in a FastAPI app, driven through ``httpx.ASGITransport``; plus a tiny HTML reader for the
assertions about forms, labels and messages."""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import ClassVar

import httpx
import pytest
from fastapi import FastAPI

from courtyard.contracts import AccessPolicy
from courtyard.core import FakeClock
from courtyard.iam import Iam, IamConfig, MemoryIamStore, PasswordHasher
from courtyard.portal import LauncherApp, PortalConfig, portal_router
from fakes import RecordingAudit

START = 1_700_000_000.0
PASSWORD = "correct horse battery staple 42"
ADA = "ada@example.com"
BOB = "bob@example.com"


class Page(HTMLParser):
    """What the tests read from a page: inputs, labels, headings, links and visible text."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.html = text
        self.inputs: list[dict[str, str]] = []
        self.labels: list[str] = []
        self.h1: list[str] = []
        self.links: list[str] = []
        self.lang: str | None = None
        self.alerts = 0
        self.buttons: list[str] = []
        self.forms: list[str] = []
        self._text: list[str] = []
        self._in_h1 = False
        self._button: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "html":
            self.lang = values.get("lang")
        elif tag == "input":
            self.inputs.append(values)
        elif tag == "label":
            self.labels.append(values.get("for", ""))
        elif tag == "h1":
            self._in_h1 = True
            self.h1.append("")
        elif tag == "a":
            self.links.append(values.get("href", ""))
        elif tag == "button":
            self._button = []
        elif tag == "form":
            self.forms.append(values.get("action", ""))
        if values.get("role") == "alert":
            self.alerts += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "h1":
            self._in_h1 = False
        elif tag == "button" and self._button is not None:
            self.buttons.append(" ".join("".join(self._button).split()))
            self._button = None

    def handle_data(self, data: str) -> None:
        self._text.append(data)
        if self._in_h1:
            self.h1[-1] += data
        if self._button is not None:
            self._button.append(data)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self._text).split())

    def value(self, name: str) -> str:
        """The value of the (first) input named ``name``."""
        for element in self.inputs:
            if element.get("name") == name:
                return element.get("value", "")
        raise AssertionError(f"no input named {name!r}")

    def field(self, name: str) -> dict[str, str]:
        """The input named ``name`` (or with that id)."""
        found = [e for e in self.inputs if name in (e.get("name"), e.get("id"))]
        assert found, f"no input {name!r}"
        return found[0]


def assert_accessible(page: Page) -> None:
    """The basics every portal page keeps: a language, one h1, a label for every input, and a
    skip link to the main region."""
    assert page.lang == "en"
    assert len(page.h1) == 1, page.h1
    for element in page.inputs:
        if element.get("type") == "hidden":
            continue
        assert element.get("id"), f"input without id: {element}"
        assert element["id"] in page.labels, f"input {element['id']} has no label"
    assert "#main" in page.links
    assert 'id="main"' in page.html


def cookie_header(response: httpx.Response, name: str) -> str:
    """The Set-Cookie header that sets ``name``."""
    for header in response.headers.get_list("set-cookie"):
        if header.startswith(f"{name}="):
            return header
    raise AssertionError(f"no Set-Cookie for {name}: {response.headers.get_list('set-cookie')}")


def cookie_attributes(header: str) -> set[str]:
    """The attributes of a Set-Cookie header, lower-cased (``httponly``, ``path=/``, ...)."""
    return {part.strip().lower() for part in header.split(";")[1:]}


@dataclass
class Portal:
    """The app under test and what it runs on."""

    iam: Iam
    clock: FakeClock
    audit: RecordingAudit
    apps: list[LauncherApp]
    app: FastAPI
    base_url: str
    config: PortalConfig
    clients: list[httpx.AsyncClient] = field(default_factory=list)

    # Helpers for the tests (test modules cannot import this conftest).
    PASSWORD: ClassVar[str] = PASSWORD
    ADA: ClassVar[str] = ADA
    BOB: ClassVar[str] = BOB
    page = staticmethod(lambda response: Page(getattr(response, "text", response)))
    assert_accessible = staticmethod(assert_accessible)
    cookie_header = staticmethod(cookie_header)
    cookie_attributes = staticmethod(cookie_attributes)

    @staticmethod
    def setup_key(html: str) -> str:
        """The TOTP setup key shown as text on the enrolment page (spaces removed)."""
        found = re.search(r'id="setup-key">([^<]+)<', html)
        assert found is not None, "no setup key on the page"
        return found.group(1).replace(" ", "")

    @staticmethod
    def recovery_codes(html: str) -> list[str]:
        return re.findall(r'class="recovery-code">([^<]+)<', html)

    def client(self, address: str = "198.51.100.7") -> httpx.AsyncClient:
        """A browser: its own cookie jar, coming from ``address`` (as the gateway reports it)."""
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url=self.base_url,
            headers={"X-Forwarded-For": address, "User-Agent": "TestBrowser/1.0"},
        )
        self.clients.append(client)
        return client

    async def login_page(self, client: httpx.AsyncClient, next_path: str = "/") -> Page:
        response = await client.get("/login", params={"next": next_path})
        assert response.status_code == 200, response.text
        return Page(response.text)

    async def post_login(
        self,
        client: httpx.AsyncClient,
        email: str,
        password: str = PASSWORD,
        next_path: str = "/",
    ) -> httpx.Response:
        form = await self.login_page(client, next_path)
        return await client.post(
            "/login",
            data={
                "email": email,
                "password": password,
                "csrf": form.value("csrf"),
                "next": form.value("next"),
            },
        )

    async def signed_in(self, email: str = ADA, address: str = "198.51.100.7") -> httpx.AsyncClient:
        client = self.client(address)
        response = await self.post_login(client, email)
        assert response.status_code == 303, response.text
        return client

    def add_app(
        self, name: str, title: str, *allow: str, public: bool = False, url: str = ""
    ) -> None:
        """Put an app in the fleet the node would list."""
        access = AccessPolicy(public=public, allow=list(allow))
        self.apps.append(
            LauncherApp(name, title, "team-" + name, "production", url or f"/apps/{name}/", access)
        )

    async def csrf(self, client: httpx.AsyncClient, path: str = "/account") -> str:
        """The session-bound CSRF token from a signed-in page."""
        response = await client.get(path)
        assert response.status_code == 200, response.text
        return Page(response.text).value("csrf")


@pytest.fixture(scope="session")
def hasher() -> PasswordHasher:
    return PasswordHasher(time_cost=2)


PortalFactory = Callable[..., Awaitable[Portal]]


@pytest.fixture
async def make_portal(hasher: PasswordHasher) -> AsyncIterator[PortalFactory]:
    """Build a portal (``secure=True``: TLS, the ``__Host-`` cookie) with Ada and Bob."""
    made: list[Portal] = []

    async def make(*, secure: bool = False) -> Portal:
        clock = FakeClock(start=START)
        audit = RecordingAudit()
        iam_config = IamConfig(issuer="https://courtyard.test", cookie_secure=secure)
        iam = Iam(MemoryIamStore(), iam_config, audit, clock=clock, hasher=hasher)
        ada = await iam.create_user(None, ADA, "Ada Lovelace", PASSWORD, roles=["auditor"])
        await iam.create_user(None, BOB, "Bob <b>Builder</b>", PASSWORD)
        await iam.create_group(None, "finance", "Finance")
        await iam.add_member(None, "finance", ada.id)
        await iam.grant(None, "developer", f"user:{ada.id}", app="wiki")
        apps: list[LauncherApp] = []

        async def list_apps() -> list[LauncherApp]:
            return list(apps)

        config = PortalConfig.for_iam(iam_config, secrets.token_bytes(32))
        app = FastAPI()
        app.include_router(portal_router(iam, list_apps, config, clock=clock))
        base_url = "https://courtyard.test" if secure else "http://courtyard.test"
        portal = Portal(iam, clock, audit, apps, app, base_url, config)
        made.append(portal)
        return portal

    yield make
    for portal in made:
        for client in portal.clients:
            await client.aclose()


@pytest.fixture
async def portal(make_portal: PortalFactory) -> Portal:
    """A portal over plain HTTP (cookie ``courtyard_session``)."""
    return await make_portal()
