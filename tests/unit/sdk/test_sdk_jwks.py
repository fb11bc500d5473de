"""JwksCache: fetched once, kept for max-age, refetched on rotation, never hammered."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from courtyard.sdk import (
    IdentityVerifier,
    InvalidIdentity,
    JwksCache,
    JwksUnavailable,
    StaticJwks,
)
from courtyard.sdk.testing import IdentityMinter, ManualClock

JWKS_URL = "http://platform.test/oauth2/jwks"


class Platform:
    """An in-process JWKS endpoint that counts its requests and can change its answer."""

    def __init__(self, jwks: dict[str, Any], cache_control: str | None = None) -> None:
        self.jwks = jwks
        self.cache_control = cache_control
        self.status = 200
        self.requests = 0
        self.transport = httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        assert str(request.url) == JWKS_URL
        if self.status != 200:
            return httpx.Response(self.status, text="down")
        headers = {"Cache-Control": self.cache_control} if self.cache_control else {}
        return httpx.Response(200, json=self.jwks, headers=headers)


def _verifier(platform: Platform, now: ManualClock) -> IdentityVerifier:
    cache = JwksCache(
        JWKS_URL, clock=now, transport=platform.transport, async_transport=platform.transport
    )
    return IdentityVerifier("http://platform.test", "expenses", jwks=cache, clock=now)


def test_the_jwks_is_fetched_once_and_reused(minter: IdentityMinter, now: ManualClock) -> None:
    platform = Platform(minter.jwks())
    verifier = _verifier(platform, now)

    for _ in range(5):
        assert verifier.verify(minter.mint()).sub == "u_test"
    assert platform.requests == 1


async def test_the_async_path_fetches_and_reuses_too(
    minter: IdentityMinter, now: ManualClock
) -> None:
    platform = Platform(minter.jwks())
    verifier = _verifier(platform, now)

    for _ in range(3):
        assert (await verifier.averify(minter.mint())).sub == "u_test"
    assert platform.requests == 1


@pytest.mark.parametrize(
    ("cache_control", "kept"),
    [(None, 300), ("public, max-age=600", 600), ("max-age=0", 30), ("no-store", 30)],
)
def test_the_jwks_is_kept_for_its_max_age(
    minter: IdentityMinter, now: ManualClock, cache_control: str | None, kept: float
) -> None:
    platform = Platform(minter.jwks(), cache_control)
    verifier = _verifier(platform, now)
    verifier.verify(minter.mint())

    now.advance(kept - 1)
    verifier.verify(minter.mint())
    assert platform.requests == 1
    now.advance(1)
    verifier.verify(minter.mint())
    assert platform.requests == 2


def test_an_unknown_kid_refetches_then_verifies_the_rotated_key(
    minter: IdentityMinter, now: ManualClock
) -> None:
    platform = Platform(minter.jwks())
    verifier = _verifier(platform, now)
    verifier.verify(minter.mint())
    now.advance(31)

    rotated = IdentityMinter(minter.issuer, minter.audience, clock=now)
    platform.jwks = {"keys": minter.jwks()["keys"] + rotated.jwks()["keys"]}

    assert verifier.verify(rotated.mint(name="Li")).name == "Li"
    assert platform.requests == 2


def test_an_unknown_kid_refetches_then_fails(minter: IdentityMinter, now: ManualClock) -> None:
    platform = Platform(minter.jwks())
    verifier = _verifier(platform, now)
    verifier.verify(minter.mint())
    now.advance(31)
    forger = IdentityMinter(minter.issuer, minter.audience, clock=now)

    with pytest.raises(InvalidIdentity, match="unknown key"):
        verifier.verify(forger.mint())
    assert platform.requests == 2


def test_a_flood_of_made_up_kids_refetches_at_most_once_per_30_s(
    minter: IdentityMinter, now: ManualClock
) -> None:
    platform = Platform(minter.jwks())
    verifier = _verifier(platform, now)
    verifier.verify(minter.mint())

    for kid in range(100):
        with pytest.raises(InvalidIdentity, match="unknown key"):
            verifier.verify(minter.sign({"sub": "u_x"}, {"kid": f"forged-{kid}"}))
        now.advance(0.5)  # 100 forgeries over 50 s
    # The fetch for the good token at t=0, and one refetch at t=30; none per forgery.
    assert platform.requests == 2


async def test_the_async_path_is_rate_limited_too(minter: IdentityMinter, now: ManualClock) -> None:
    platform = Platform(minter.jwks())
    verifier = _verifier(platform, now)
    await verifier.averify(minter.mint())
    for kid in range(20):
        with pytest.raises(InvalidIdentity):
            await verifier.averify(minter.sign({"sub": "u_x"}, {"kid": f"forged-{kid}"}))
    assert platform.requests == 1


def test_no_jwks_at_all_is_an_outage_not_a_bad_token(
    minter: IdentityMinter, now: ManualClock
) -> None:
    platform = Platform(minter.jwks())
    platform.status = 503
    verifier = _verifier(platform, now)

    with pytest.raises(JwksUnavailable, match="HTTP 503"):
        verifier.verify(minter.mint())
    with pytest.raises(JwksUnavailable):
        verifier.verify(minter.mint())
    assert platform.requests == 1  # retried only after retry_interval

    platform.status = 200
    now.advance(5)
    assert verifier.verify(minter.mint()).sub == "u_test"
    assert platform.requests == 2


def test_a_failed_refresh_keeps_the_known_keys(minter: IdentityMinter, now: ManualClock) -> None:
    platform = Platform(minter.jwks())
    verifier = _verifier(platform, now)
    verifier.verify(minter.mint())

    platform.status = 500
    now.advance(301)
    assert verifier.verify(minter.mint()).sub == "u_test"
    assert platform.requests == 2


def test_an_unreachable_platform_is_reported_readably(now: ManualClock) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    cache = JwksCache(JWKS_URL, clock=now, transport=httpx.MockTransport(refuse))
    with pytest.raises(JwksUnavailable) as caught:
        cache.key("k1")
    assert str(caught.value) == (
        f"cannot fetch the platform's keys from {JWKS_URL}: ConnectError: connection refused"
    )


@pytest.mark.parametrize(
    ("body", "reason"),
    [("not json", "the JWKS is not JSON"), ("[]", 'the JWKS has no "keys" list')],
)
def test_a_malformed_jwks_is_reported(now: ManualClock, body: str, reason: str) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, text=body))
    cache = JwksCache(JWKS_URL, clock=now, transport=transport)
    with pytest.raises(JwksUnavailable, match=reason):
        cache.key("k1")


def test_only_public_ec_p256_and_rsa_signing_keys_are_used(minter: IdentityMinter) -> None:
    ec = minter.jwks()["keys"][0]
    jwks = StaticJwks(
        {
            "keys": [
                {"kty": "oct", "kid": "secret", "k": "c2VjcmV0"},
                {**ec, "kid": "enc", "use": "enc"},
                {**ec, "kid": "wrong-alg", "alg": "ES384"},
                {**ec, "kid": "no-kid-type", "crv": "P-384"},
                {"kty": "EC", "kid": "broken", "crv": "P-256", "x": "AA", "y": "AA"},
                "not a key",
                ec,
            ]
        }
    )
    found = jwks.key(minter.kid)
    assert found is not None and found.alg == "ES256"
    for kid in ("secret", "enc", "wrong-alg", "no-kid-type", "broken"):
        assert jwks.key(kid) is None
