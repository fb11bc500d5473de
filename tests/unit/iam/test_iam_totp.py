"""TOTP (RFC 6238): the Appendix B vectors, the ±1 step window and one use per code."""

from __future__ import annotations

import base64
from urllib.parse import parse_qs, urlsplit

import pytest

from courtyard.core import FakeClock
from courtyard.iam import (
    MalformedTotpSecret,
    TotpAlgorithm,
    TotpVerifier,
    new_totp_secret,
    provisioning_uri,
)

# RFC 6238 Appendix B: the seed for each algorithm is ASCII "1234567890" repeated to the
# digest's length (20, 32 and 64 bytes).
_SEEDS: dict[TotpAlgorithm, str] = {
    "sha1": base64.b32encode(b"12345678901234567890").decode(),
    "sha256": base64.b32encode(b"12345678901234567890123456789012").decode(),
    "sha512": base64.b32encode(b"1234567890" * 6 + b"1234").decode(),
}

RFC_6238_VECTORS: list[tuple[int, str, TotpAlgorithm]] = [
    (59, "94287082", "sha1"),
    (59, "46119246", "sha256"),
    (59, "90693936", "sha512"),
    (1111111109, "07081804", "sha1"),
    (1111111109, "68084774", "sha256"),
    (1111111109, "25091201", "sha512"),
    (1111111111, "14050471", "sha1"),
    (1111111111, "67062674", "sha256"),
    (1111111111, "99943326", "sha512"),
    (1234567890, "89005924", "sha1"),
    (1234567890, "91819424", "sha256"),
    (1234567890, "93441116", "sha512"),
    (2000000000, "69279037", "sha1"),
    (2000000000, "90698825", "sha256"),
    (2000000000, "38618901", "sha512"),
    (20000000000, "65353130", "sha1"),
    (20000000000, "77737706", "sha256"),
    (20000000000, "47863826", "sha512"),
]

SECRET = _SEEDS["sha1"]
START = 1_700_000_000.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=START)


@pytest.fixture
def verifier(clock: FakeClock) -> TotpVerifier:
    return TotpVerifier(clock)


@pytest.mark.parametrize(("time", "code", "algorithm"), RFC_6238_VECTORS)
def test_rfc_6238_appendix_b_vectors(time: int, code: str, algorithm: TotpAlgorithm) -> None:
    verifier = TotpVerifier(FakeClock(start=float(time)), digits=8, algorithm=algorithm)
    step = time // 30
    assert verifier.code_at(_SEEDS[algorithm], step) == code
    assert verifier.verify(_SEEDS[algorithm], code, last_used_step=None) == step


def test_a_code_is_accepted_once(verifier: TotpVerifier) -> None:
    code = verifier.code_at(SECRET, verifier.current_step())
    step = verifier.verify(SECRET, code, last_used_step=None)
    assert step == verifier.current_step()
    assert verifier.verify(SECRET, code, last_used_step=step) is None


@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_window_of_one_step_either_side(verifier: TotpVerifier, offset: int) -> None:
    now = verifier.current_step()
    code = verifier.code_at(SECRET, now + offset)
    assert verifier.verify(SECRET, code, last_used_step=None) == now + offset


@pytest.mark.parametrize("offset", [-3, -2, 2, 3])
def test_codes_outside_the_window_are_refused(verifier: TotpVerifier, offset: int) -> None:
    code = verifier.code_at(SECRET, verifier.current_step() + offset)
    assert verifier.verify(SECRET, code, last_used_step=None) is None


def test_steps_at_or_before_the_last_used_one_are_refused(verifier: TotpVerifier) -> None:
    now = verifier.current_step()
    earlier = verifier.code_at(SECRET, now - 1)
    later = verifier.code_at(SECRET, now + 1)
    assert verifier.verify(SECRET, earlier, last_used_step=now) is None
    assert verifier.verify(SECRET, later, last_used_step=now) == now + 1


async def test_the_next_period_brings_a_fresh_code(
    clock: FakeClock, verifier: TotpVerifier
) -> None:
    first = verifier.verify(SECRET, verifier.code_at(SECRET, verifier.current_step()), None)
    assert first is not None
    await clock.advance(30)
    code = verifier.code_at(SECRET, verifier.current_step())
    assert verifier.verify(SECRET, code, last_used_step=first) == first + 1


def test_spaces_in_a_typed_code_are_ignored(verifier: TotpVerifier) -> None:
    code = verifier.code_at(SECRET, verifier.current_step())
    assert verifier.verify(SECRET, f"{code[:3]} {code[3:]}", None) == verifier.current_step()


@pytest.mark.parametrize(
    "typed", ["", "12345", "1234567", "abcdef", "\uff11\uff12\uff13\uff14\uff15\uff16", "12345\n"]
)
def test_malformed_codes_are_simply_wrong(verifier: TotpVerifier, typed: str) -> None:
    assert verifier.verify(SECRET, typed, last_used_step=None) is None


def test_wrong_code_is_refused(verifier: TotpVerifier) -> None:
    right = verifier.code_at(SECRET, verifier.current_step())
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    assert verifier.verify(SECRET, wrong, last_used_step=None) is None


def test_new_secrets_are_160_bit_base32_and_distinct() -> None:
    secrets = {new_totp_secret() for _ in range(20)}
    assert len(secrets) == 20
    for secret in secrets:
        assert len(base64.b32decode(secret)) == 20


def test_provisioning_uri_names_the_issuer_and_account() -> None:
    secret = new_totp_secret()
    uri = provisioning_uri(secret, "alice@example.com")
    parts = urlsplit(uri)
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp")
    assert parts.path == "/Courtyard:alice%40example.com"
    query = parse_qs(parts.query)
    assert query["secret"] == [secret]
    assert query["issuer"] == ["Courtyard"]


@pytest.mark.parametrize("secret", ["not base32!", "MFRGG==="])
def test_malformed_secret_raises(verifier: TotpVerifier, secret: str) -> None:
    with pytest.raises(MalformedTotpSecret) as caught:
        verifier.verify(secret, "123456", last_used_step=None)
    assert str(caught.value).startswith("stored TOTP secret is malformed")
    with pytest.raises(MalformedTotpSecret):
        provisioning_uri(secret, "alice")


@pytest.mark.parametrize("options", [{"digits": 5}, {"digits": 11}, {"period": 0}, {"window": -1}])
def test_verifier_refuses_settings_outside_the_rfc(
    clock: FakeClock, options: dict[str, int]
) -> None:
    with pytest.raises(ValueError):
        TotpVerifier(clock, **options)  # type: ignore[arg-type]
