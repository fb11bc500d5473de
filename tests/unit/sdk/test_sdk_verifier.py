"""IdentityVerifier: what it accepts, and every reason it refuses an assertion."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import OctKey

from courtyard.sdk import (
    Identity,
    IdentityError,
    IdentityVerifier,
    InvalidIdentity,
    JwksCache,
    StaticJwks,
    from_environment,
)
from courtyard.sdk.testing import IdentityMinter, ManualClock

ISSUER = "http://platform.test"  # what conftest's minter signs as
APP = "expenses"


def _b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _refusal(verifier: IdentityVerifier, token: str) -> str:
    with pytest.raises(InvalidIdentity) as caught:
        verifier.verify(token)
    return caught.value.reason


def test_a_good_assertion_gives_the_identity(minter: IdentityMinter) -> None:
    token = minter.mint(
        sub="u_0123456789abcdef",
        email="dana@example.com",
        name="Dana",
        groups=["finance"],
        roles=["viewer"],
    )

    identity = minter.verifier().verify(token)

    assert identity == Identity(
        sub="u_0123456789abcdef",
        email="dana@example.com",
        name="Dana",
        groups=("finance",),
        roles=("viewer",),
    )
    assert identity.claims["iss"] == ISSUER
    assert identity.has_role("viewer") and not identity.has_role("owner")
    assert identity.in_group("finance") and not identity.in_group("ops")
    assert not identity.is_service
    assert identity.display_name == "Dana"
    assert identity.to_claims()["groups"] == ["finance"]


async def test_averify_gives_the_same_identity(minter: IdentityMinter) -> None:
    token = minter.mint(name="Dana")
    verifier = minter.verifier()
    assert await verifier.averify(token) == verifier.verify(token)


def test_a_mesh_call_names_the_calling_service_in_act(minter: IdentityMinter) -> None:
    identity = minter.verifier().verify(minter.mint(sub="u_1", act="svc:ledger"))
    assert identity.act == "svc:ledger"
    assert identity.sub == "u_1"


def test_a_service_account_is_a_service(minter: IdentityMinter) -> None:
    identity = minter.verifier().verify(minter.mint(sub="svc:reports", email="", name=""))
    assert identity.is_service
    assert identity.display_name == "svc:reports"


def test_an_rs256_assertion_verifies(now: ManualClock) -> None:
    minter = IdentityMinter(ISSUER, APP, alg="RS256", clock=now)
    assert minter.verifier().verify(minter.mint(name="Li")).name == "Li"


def test_an_assertion_for_another_app_is_refused(minter: IdentityMinter) -> None:
    token = minter.mint(aud="notes")
    assert _refusal(minter.verifier(), token) == "not meant for 'expenses' (aud)"
    assert minter.verifier("notes").verify(token).sub == "u_test"


def test_an_audience_list_holding_the_app_is_accepted(
    minter: IdentityMinter, now: ManualClock
) -> None:
    claims = {
        "iss": ISSUER,
        "aud": ["courtyard", APP],
        "sub": "u_x",
        "iat": now.now,
        "exp": now.now,
    }
    assert minter.verifier().verify(minter.sign(claims)).sub == "u_x"


def test_another_issuer_is_refused(minter: IdentityMinter) -> None:
    token = minter.mint(iss="http://evil.test")
    assert "iss" in _refusal(minter.verifier(), token)


def test_an_expired_assertion_is_refused_after_the_leeway(
    minter: IdentityMinter, now: ManualClock
) -> None:
    token = minter.mint(ttl=60)
    verifier = minter.verifier()
    now.advance(64)
    assert verifier.verify(token).sub == "u_test"  # within 5 s of leeway
    now.advance(1)
    assert _refusal(verifier, token) == "expired"


def test_an_assertion_from_the_future_is_refused(minter: IdentityMinter, now: ManualClock) -> None:
    verifier = minter.verifier()
    assert _refusal(verifier, minter.mint(iat=int(now.now) + 60)).startswith("not valid yet")
    assert _refusal(verifier, minter.mint(nbf=int(now.now) + 60)).startswith("not valid yet")
    assert verifier.verify(minter.mint(nbf=int(now.now) + 3)).sub == "u_test"


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"exp": None}, "missing or invalid exp or iat"),
        ({"iat": "yesterday"}, "missing or invalid exp or iat"),
        ({"exp": True}, "missing or invalid exp or iat"),
        ({"sub": ""}, "missing sub"),
        ({"name": 7}, "invalid email or name"),
        ({"groups": "finance"}, "invalid groups or roles"),
        ({"roles": [1]}, "invalid groups or roles"),
        ({"act": "svc:ledger"}, "invalid act (expected an object with a sub)"),
    ],
)
def test_claims_of_the_wrong_shape_are_refused(
    minter: IdentityMinter, now: ManualClock, claims: dict[str, Any], reason: str
) -> None:
    good = {"iss": ISSUER, "aud": APP, "sub": "u_x", "iat": now.now, "exp": now.now + 60}
    assert _refusal(minter.verifier(), minter.sign({**good, **claims})) == reason


def test_alg_none_is_refused(minter: IdentityMinter, now: ManualClock) -> None:
    claims = {"iss": ISSUER, "aud": APP, "sub": "u_x", "iat": now.now, "exp": now.now + 60}
    token = f"{_b64({'alg': 'none', 'kid': minter.kid})}.{_b64(claims)}."
    assert _refusal(minter.verifier(), token) == "algorithm 'none' is not allowed"


def test_hs256_signed_with_the_public_key_is_refused(
    minter: IdentityMinter, now: ManualClock
) -> None:
    # The classic key-confusion attack (RFC 8725 §2.1): HMAC keyed with the public key.
    secret = OctKey.import_key(json.dumps(minter.jwks()["keys"][0]).encode())
    claims = {"iss": ISSUER, "aud": APP, "sub": "u_x", "iat": now.now, "exp": now.now + 60}
    token = jwt.encode({"alg": "HS256", "kid": minter.kid}, claims, secret, algorithms=["HS256"])
    assert _refusal(minter.verifier(), token) == "algorithm 'HS256' is not allowed"


def test_an_alg_that_does_not_match_the_key_is_refused(
    minter: IdentityMinter, now: ManualClock
) -> None:
    other = IdentityMinter(ISSUER, APP, alg="RS256", clock=now)
    token = other.sign(
        {"iss": ISSUER, "aud": APP, "sub": "u_x", "iat": 1, "exp": 2}, {"kid": minter.kid}
    )
    assert _refusal(minter.verifier(), token) == "algorithm RS256 does not match the key"


def test_a_signature_by_another_key_with_the_same_kid_is_refused(
    minter: IdentityMinter, now: ManualClock
) -> None:
    forger = IdentityMinter(ISSUER, APP, clock=now)
    token = forger.sign(
        {"iss": ISSUER, "aud": APP, "sub": "u_x", "iat": 1, "exp": 2**40}, {"kid": minter.kid}
    )
    assert _refusal(minter.verifier(), token) == "bad signature"


def test_an_unknown_kid_is_refused(minter: IdentityMinter, now: ManualClock) -> None:
    forger = IdentityMinter(ISSUER, APP, clock=now)
    assert _refusal(minter.verifier(), forger.mint()).startswith("unknown key")


def test_an_access_token_is_not_an_assertion(minter: IdentityMinter) -> None:
    claims = {"iss": ISSUER, "aud": APP, "sub": "u_x", "iat": 1, "exp": 2**40}
    token = minter.sign(claims, {"typ": "at+jwt"})
    assert "typ" in _refusal(minter.verifier(), token)


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "x" * 20_000, "é.é.é"])
def test_garbage_is_refused_readably(minter: IdentityMinter, token: str) -> None:
    assert _refusal(minter.verifier(), token).startswith("not a JWT")


def test_a_token_without_kid_is_refused(minter: IdentityMinter) -> None:
    token = minter.sign({"sub": "u_x"}, {"kid": ""})
    assert _refusal(minter.verifier(), token) == "the token names no key (kid)"


def test_messages_never_echo_the_token(minter: IdentityMinter, now: ManualClock) -> None:
    token = minter.mint()
    now.advance(3600)
    with pytest.raises(InvalidIdentity) as caught:
        minter.verifier().verify(token)
    assert token not in str(caught.value)
    assert str(caught.value) == "invalid Courtyard-Identity assertion: expired"


def test_from_environment_reads_the_platform_variables_at_call_time() -> None:
    verifier = from_environment(
        {"COURTYARD_PLATFORM_URL": "http://127.0.0.1:8080/", "COURTYARD_APP": "notes"}
    )
    assert (verifier.issuer, verifier.audience) == ("http://127.0.0.1:8080", "notes")
    assert isinstance(verifier.jwks, JwksCache)
    assert verifier.jwks.url == "http://127.0.0.1:8080/oauth2/jwks"
    assert verifier.jwks.fetches == 0  # nothing fetched before the first request


def test_from_environment_takes_another_jwks_url_when_given() -> None:
    verifier = from_environment(
        {
            "COURTYARD_PLATFORM_URL": "https://courtyard.example.com",
            "COURTYARD_APP": "notes",
            "COURTYARD_JWKS_URL": "http://127.0.0.1:9000/oauth2/jwks",
        }
    )
    assert verifier.issuer == "https://courtyard.example.com"
    assert isinstance(verifier.jwks, JwksCache)
    assert verifier.jwks.url == "http://127.0.0.1:9000/oauth2/jwks"


def test_from_environment_names_what_is_missing() -> None:
    with pytest.raises(IdentityError, match="COURTYARD_PLATFORM_URL and COURTYARD_APP not set"):
        from_environment({})
    with pytest.raises(IdentityError, match=r"^COURTYARD_APP not set"):
        from_environment({"COURTYARD_PLATFORM_URL": "http://x"})


def test_a_verifier_needs_an_issuer_and_an_audience() -> None:
    with pytest.raises(IdentityError):
        IdentityVerifier("", "app", jwks=StaticJwks({"keys": []}))
