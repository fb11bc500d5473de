"""The real IAM service and OpenID provider over memory stores, a fake clock and a recording
audit log: what the node's identity glue (feed, API authentication) is tested against."""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from courtyard.core import FakeClock
from courtyard.iam import (
    ClientInfo,
    Iam,
    IamConfig,
    KeyRing,
    MemoryIamStore,
    MemoryOidcStore,
    OidcConfig,
    OidcProvider,
    PasswordHasher,
)
from fakes import RecordingAudit

ISSUER = "https://courtyard.test"
START = 1_700_000_000.0
REDIRECT = "https://app.example.com/callback"
PASSWORD = "a long passphrase nobody guesses"

_KEYS: list[Any] = []  # one key generation per run: RSA key generation is slow


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=START)


@pytest.fixture
def audit() -> RecordingAudit:
    return RecordingAudit()


@pytest.fixture(scope="session")
def hasher() -> PasswordHasher:
    return PasswordHasher(time_cost=2)


@pytest.fixture
def iam(clock: FakeClock, audit: RecordingAudit, hasher: PasswordHasher) -> Iam:
    return Iam(MemoryIamStore(), IamConfig(issuer=ISSUER), audit, clock=clock, hasher=hasher)


@pytest.fixture
async def oidc(iam: Iam, clock: FakeClock, audit: RecordingAudit) -> OidcProvider:
    store = MemoryOidcStore()
    if _KEYS:
        store.save_keys(_KEYS, [])
    config = OidcConfig(issuer=ISSUER, propagation_delay=0, session_cookie=iam.config.cookie_name)
    keys = await KeyRing.load(
        store, clock=clock, propagation_delay=0, lifetime=config.max_token_lifetime
    )
    if not _KEYS:
        _KEYS.extend(store.load_keys())
    provider = OidcProvider(store, keys, iam, audit, config, clock=clock)
    await provider.load()
    return provider


async def service_token(
    oidc: OidcProvider, *, audience: tuple[str, ...] = ("courtyard",)
) -> tuple[ClientInfo, str, str]:
    """(client, client secret, access token) from the client_credentials grant of a new
    confidential client."""
    info, secret = await oidc.register_client(
        None,
        "reports",
        name="Reports",
        public=False,
        redirect_uris=[],
        grant_types=["client_credentials"],
        scopes=["groups", "profile"],
        audience=audience,
    )
    assert secret is not None
    response = await oidc.token(
        {"grant_type": "client_credentials", "client_id": info.client_id, "client_secret": secret},
        None,
    )
    return info, secret, str(response["access_token"])


async def user_token(oidc: OidcProvider, cookie: str) -> tuple[ClientInfo, str, str | None]:
    """(client, access token, client secret) from the code grant (with PKCE) for the user
    signed in with ``cookie``."""
    info, secret = await oidc.register_client(
        None, "notes", name="Notes", public=False, redirect_uris=[REDIRECT]
    )
    verifier = secrets.token_urlsafe(48)
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    redirect = await oidc.authorize(
        {
            "response_type": "code",
            "client_id": info.client_id,
            "redirect_uri": REDIRECT,
            "scope": "openid profile",
            "state": "st",
            "nonce": "n",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        },
        cookie,
    )
    code = parse_qs(urlsplit(getattr(redirect, "url", "")).query)["code"][0]
    response = await oidc.token(
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
            "client_id": info.client_id,
            "client_secret": secret or "",
        },
        None,
    )
    return info, str(response["access_token"]), secret


async def signed_in(iam: Iam, email: str, **roles: Any) -> tuple[str, str]:
    """(user id, session cookie) of a new user who signed in with a password."""
    user = await iam.create_user(None, email, email.partition("@")[0], PASSWORD, **roles)
    outcome = await iam.login(email, PASSWORD, client="203.0.113.7")
    assert outcome.status == "ok" and outcome.cookie is not None
    return user.id, outcome.cookie
