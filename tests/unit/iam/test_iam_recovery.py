"""Recovery codes: 80-bit, readable, stored as SHA-256, each usable once."""

from __future__ import annotations

import re

import pytest

from courtyard.iam import hash_recovery_code, new_recovery_codes, use_recovery_code

_SHAPE = re.compile(r"[0-9a-hjkmnp-tv-z]{4}(?:-[0-9a-hjkmnp-tv-z]{4}){3}")


def test_codes_are_grouped_crockford_base32_and_distinct() -> None:
    codes = new_recovery_codes()
    assert len(codes) == 10
    assert len(set(codes)) == 10
    for code in codes:
        assert _SHAPE.fullmatch(code), code
        # 16 symbols of a 32-symbol alphabet: 80 bits.
        assert len(code.replace("-", "")) * 5 >= 80


def test_n_must_be_positive() -> None:
    assert len(new_recovery_codes(3)) == 3
    with pytest.raises(ValueError, match="at least 1"):
        new_recovery_codes(0)


def test_stored_form_is_a_salted_sha256_digest_not_the_code() -> None:
    code = new_recovery_codes(1)[0]
    stored = hash_recovery_code(code)
    assert re.fullmatch(r"sha256\$[0-9a-f]{32}\$[0-9a-f]{64}", stored)
    assert code.replace("-", "") not in stored
    # A fresh salt each time: equal codes don't give equal stored values.
    assert hash_recovery_code(code) != stored


@pytest.mark.parametrize("damaged", ["", "sha256", "md5$00$00", "sha256$$", "plain-code"])
def test_damaged_stored_entries_never_match(damaged: str) -> None:
    code = "0k1m-x9qa-7rst-vw2z"
    assert use_recovery_code([damaged], code) is None
    assert use_recovery_code([damaged, hash_recovery_code(code)], code) == (damaged,)


def test_a_code_works_once() -> None:
    codes = new_recovery_codes()
    hashes = tuple(hash_recovery_code(code) for code in codes)
    remaining = use_recovery_code(hashes, codes[3])
    assert remaining is not None
    assert len(remaining) == 9
    assert hash_recovery_code(codes[3]) not in remaining
    assert use_recovery_code(remaining, codes[3]) is None
    assert use_recovery_code(remaining, codes[4]) is not None


def test_typing_variants_are_accepted() -> None:
    code = "0k1m-x9qa-7rst-vw2z"
    hashes = [hash_recovery_code(code)]
    for typed in [
        "0K1M-X9QA-7RST-VW2Z",
        " 0k1m x9qa 7rst vw2z ",
        "0k1mx9qa7rstvw2z",
        "OkIm-x9qa-7rst-vw2z",
    ]:
        assert use_recovery_code(hashes, typed) == (), typed


@pytest.mark.parametrize(
    "typed", ["", "0k1m-x9qa-7rst", "0k1m-x9qa-7rst-vw2z-0000", "0k1m-x9qa-7rst-vw2!", "ünïcode"]
)
def test_wrong_or_malformed_codes_match_nothing(typed: str) -> None:
    hashes = [hash_recovery_code("0k1m-x9qa-7rst-vw2z")]
    assert use_recovery_code(hashes, typed) is None
