"""The test kit app authors use: minted assertions look like the platform's."""

from __future__ import annotations

from joserfc import jws

from courtyard.sdk import StaticJwks
from courtyard.sdk.testing import IdentityMinter, ManualClock


def test_minted_assertions_carry_the_platform_claims(minter: IdentityMinter) -> None:
    token = minter.mint(name="Dana", groups=["finance"], roles=["owner"], ttl=30)
    header = jws.extract_compact(token.encode()).headers()
    assert header == {"alg": "ES256", "typ": "JWT", "kid": minter.kid}

    claims = dict(minter.verifier().verify(token).claims)
    assert claims["exp"] - claims["iat"] == 30
    assert {k: claims[k] for k in ("iss", "aud", "sub", "name", "groups", "roles")} == {
        "iss": "http://platform.test",
        "aud": "expenses",
        "sub": "u_test",
        "name": "Dana",
        "groups": ["finance"],
        "roles": ["owner"],
    }


def test_the_jwks_holds_only_the_public_key(minter: IdentityMinter) -> None:
    (key,) = minter.jwks()["keys"]
    assert "d" not in key
    assert (key["kid"], key["alg"], key["use"], key["crv"]) == (minter.kid, "ES256", "sig", "P-256")
    assert StaticJwks(minter.jwks()).key(minter.kid) is not None


def test_headers_carry_one_assertion(minter: IdentityMinter) -> None:
    headers = minter.headers(name="Li")
    assert list(headers) == ["Courtyard-Identity"]
    assert minter.verifier().verify(headers["Courtyard-Identity"]).name == "Li"


def test_the_default_minter_works_without_arguments() -> None:
    minter = IdentityMinter()
    assert minter.verifier().verify(minter.mint()).email == "test@example.com"


def test_extra_claims_and_another_audience(now: ManualClock) -> None:
    minter = IdentityMinter(clock=now)
    token = minter.mint(aud="notes", tenant="acme")
    identity = minter.verifier("notes").verify(token)
    assert identity.claims["tenant"] == "acme"


def test_the_manual_clock_moves_only_when_told() -> None:
    clock = ManualClock(100.0)
    assert clock() == 100.0
    clock.advance(2.5)
    assert clock() == 102.5
