"""API tokens: shape, parsing, constant-time verification, and the usability decision."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from courtyard.iam import (
    ApiTokenRecord,
    MalformedApiToken,
    hash_api_secret,
    new_api_token,
    parse_api_token,
    token_is_usable,
    verify_api_token,
)

NOW = 1_700_000_000.0


def test_issued_token_has_prefix_id_and_a_256_bit_secret() -> None:
    issued = new_api_token()
    match = re.fullmatch(r"cy_pat_([0-9a-f]{16})_([A-Za-z0-9_-]{43})", issued.token)
    assert match is not None
    assert match.group(1) == issued.token_id
    # 43 URL-safe base64 characters carry 258 bits, from 32 random bytes.
    assert len(match.group(2)) * 6 >= 256
    assert issued.secret_hash == hash_api_secret(match.group(2))
    assert match.group(2) not in repr(issued)


def test_tokens_are_distinct() -> None:
    tokens = {new_api_token().token for _ in range(50)}
    assert len(tokens) == 50


def test_parse_then_verify_round_trip() -> None:
    issued = new_api_token()
    token_id, secret = parse_api_token(issued.token)
    assert token_id == issued.token_id
    assert verify_api_token(issued.secret_hash, secret) is True


def test_a_secret_containing_underscores_parses() -> None:
    secret = "a_b_c" + "x" * 38
    assert parse_api_token(f"cy_pat_0123456789abcdef_{secret}\n") == ("0123456789abcdef", secret)


def test_custom_prefix() -> None:
    issued = new_api_token(prefix="cy_key")
    assert issued.token.startswith("cy_key_")
    assert parse_api_token(issued.token, prefix="cy_key")[0] == issued.token_id
    with pytest.raises(MalformedApiToken):
        parse_api_token(issued.token)


@pytest.mark.parametrize("prefix", ["", "CY", "cy-pat", "cy_", "_cy", "9cy"])
def test_prefix_must_be_lower_snake_case(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        new_api_token(prefix=prefix)


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("", "does not start with"),
        ("ghp_0123456789abcdef0123456789abcdef0123", "does not start with"),
        ("cy_pat_", "token id"),
        ("cy_pat_0123456789ABCDEF_" + "x" * 43, "token id"),
        ("cy_pat_0123456789abcde_" + "x" * 43, "token id"),
        ("cy_pat_0123456789abcdef", "token id"),
        ("cy_pat_0123456789abcdef_" + "x" * 42, "secret part"),
        ("cy_pat_0123456789abcdef_" + "x" * 42 + "=", "secret part"),
    ],
)
def test_malformed_tokens_raise_without_echoing(text: str, detail: str) -> None:
    with pytest.raises(MalformedApiToken) as caught:
        parse_api_token(text)
    message = str(caught.value)
    assert message.startswith("not a valid API token")
    assert detail in message
    if text:
        assert text not in message


def test_wrong_secret_does_not_verify() -> None:
    issued = new_api_token()
    other = parse_api_token(new_api_token().token)[1]
    assert verify_api_token(issued.secret_hash, other) is False
    assert verify_api_token("", other) is False
    assert verify_api_token("é" * 64, other) is False


RECORD = ApiTokenRecord(
    id="0123456789abcdef",
    owner="alice",
    scopes=frozenset({"apps:read", "apps:deploy"}),
    created_at=NOW - 3600,
    expires_at=NOW + 3600,
)


def test_usable_with_scope_before_expiry() -> None:
    assert token_is_usable(RECORD, NOW, "apps:read") is True
    assert token_is_usable(replace(RECORD, expires_at=None), NOW + 10**9, "apps:deploy") is True


def test_not_usable_at_or_after_expiry() -> None:
    record = RECORD
    assert token_is_usable(record, NOW + 3599.9, "apps:read") is True
    assert token_is_usable(record, NOW + 3600, "apps:read") is False


def test_not_usable_once_revoked() -> None:
    assert token_is_usable(replace(RECORD, revoked_at=NOW - 1), NOW, "apps:read") is False
    # Revocation stamped by a node whose clock runs ahead still applies now.
    assert token_is_usable(replace(RECORD, revoked_at=NOW + 5), NOW, "apps:read") is False


def test_not_usable_without_the_scope() -> None:
    assert token_is_usable(RECORD, NOW, "apps:delete") is False
    assert token_is_usable(replace(RECORD, scopes=frozenset()), NOW, "apps:read") is False


def test_record_is_frozen() -> None:
    record = RECORD
    with pytest.raises(AttributeError):
        record.owner = "mallory"  # type: ignore[misc]
