"""Fakes and fixtures for the OpenID Connect provider: a people directory with sessions, an
audit recorder, a key ring made once per run (RSA key generation is slow) and every store."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Request
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.responses import Response

from backends import BACKENDS, sql_database
from courtyard.audit import AuditEvent
from courtyard.contracts import IdentityClaims
from courtyard.core import FakeClock
from courtyard.iam._errors import IamError
from courtyard.iam._keyring import KeyGeneration, KeyRing, new_generation
from courtyard.iam._oidc import OidcProvider
from courtyard.iam._oidc_models import OidcConfig
from courtyard.iam._oidc_routes import clients_router, oidc_router
from courtyard.iam._oidc_sql import SqlOidcStore
from courtyard.iam._oidc_store import MemoryOidcStore, OidcStore

ISSUER = "https://courtyard.test"
START = 1_700_000_000.0
REDIRECT = "https://app.example.com/callback"
LOGOUT_REDIRECT = "https://app.example.com/bye"


@dataclass(frozen=True)
class FakePrincipal:
    """Shaped like ``courtyard.iam.Principal``."""

    id: str
    email: str = ""
    name: str = ""
    kind: str = "user"
    groups: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    app_roles: dict[str, tuple[str, ...]] = field(default_factory=dict)
    auth: str = "password"
    session_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return "platform-admin" in self.roles

    def claims(self, app: str | None = None) -> IdentityClaims:
        roles = list(self.roles) + list(self.app_roles.get(app or "", ()))
        return IdentityClaims(
            sub=self.id, email=self.email, name=self.name, groups=list(self.groups), roles=roles
        )


ALICE = FakePrincipal(
    "u_0123456789abcdef",
    email="alice@example.com",
    name="Alice",
    groups=("staff",),
    roles=("auditor",),
    app_roles={"notes": ("owner",)},
    session_id="s_1",
)
ADMIN = FakePrincipal("u_admin0000000000", "admin@example.com", "Admin", roles=("platform-admin",))


class FakeUsers:
    """A people directory: ``sessions`` maps cookie values to principals."""

    def __init__(self) -> None:
        self.people: dict[str, FakePrincipal] = {ALICE.id: ALICE}
        self.sessions: dict[str, FakePrincipal] = {}
        self.logged_out: list[str] = []

    def sign_in(self, principal: FakePrincipal = ALICE) -> str:
        cookie = secrets.token_urlsafe(16)
        self.sessions[cookie] = principal
        return cookie

    async def principal_of(self, ref: str) -> FakePrincipal:
        if ref not in self.people:
            raise IamError(f"no user {ref}")
        return self.people[ref]

    async def authenticate_session(self, cookie: str) -> FakePrincipal | None:
        return self.sessions.get(cookie)

    async def logout(self, cookie: str) -> None:
        self.sessions.pop(cookie, None)
        self.logged_out.append(cookie)


class FakeAudit:
    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    async def record(self, event: AuditEvent) -> object:
        self.events.append(event)
        return None

    def actions(self) -> list[str]:
        return [event.action for event in self.events]


_GENERATION: list[KeyGeneration] = []


def first_generation() -> KeyGeneration:
    """One active generation shared by the whole run."""
    if not _GENERATION:
        _GENERATION.append(new_generation(START - 3600, "active"))
    return _GENERATION[0]


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@pytest.fixture(params=BACKENDS)
def oidc_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OidcStore]:
    """Each OIDC store backend, empty."""
    if request.param == "memory":
        yield MemoryOidcStore()
        return
    with sql_database(request, tmp_path) as db:
        yield SqlOidcStore(db)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=START)


@pytest.fixture
def users() -> FakeUsers:
    return FakeUsers()


@pytest.fixture
def audit() -> FakeAudit:
    return FakeAudit()


@pytest.fixture
def config() -> OidcConfig:
    return OidcConfig(issuer=ISSUER, propagation_delay=0.0)  # a float, as the node passes it


@pytest.fixture
async def provider(
    clock: FakeClock, users: FakeUsers, audit: FakeAudit, config: OidcConfig
) -> OidcProvider:
    store = MemoryOidcStore()
    store.save_keys([first_generation()], [])
    keys = await KeyRing.load(
        store,
        clock=clock,
        propagation_delay=config.propagation_delay,
        lifetime=config.max_token_lifetime,
    )
    provider = OidcProvider(store, keys, users, audit, config, clock=clock)
    await provider.load()
    return provider


class _TestPrincipal(BaseHTTPMiddleware):
    """Stands in for the node's authentication: ``X-Test-User: admin|alice``."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        who = request.headers.get("x-test-user")
        request.state.principal = {"admin": ADMIN, "alice": ALICE}.get(who or "")
        return await call_next(request)


@pytest.fixture
def app(provider: OidcProvider) -> FastAPI:
    app = FastAPI()
    app.add_middleware(_TestPrincipal)
    app.include_router(oidc_router(provider))
    app.include_router(clients_router(provider))
    return app


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as client:
        yield client
