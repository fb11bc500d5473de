"""RFC 8785 canonical JSON against the RFC's own examples, and the entry fast path against it."""

from __future__ import annotations

import json
import math
import struct

import pytest

from courtyard.audit import Actor, AuditEntry, canonical_json
from courtyard.audit._canonical import entry_bytes


def test_rfc8785_section_3_2_4_example() -> None:
    # The whole transformation (RFC 8785 §3.2.4): input as the RFC writes it.
    source = (
        '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
        '"string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
        '"literals": [null, true, false]}'
    )
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    assert canonical_json(json.loads(source)) == expected.encode("utf-8")


def test_rfc8785_section_3_2_3_sorts_members_by_utf16_code_units() -> None:
    source = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    encoded = canonical_json(source).decode("utf-8")
    order = [key for key in json.loads(encoded)]
    # The emoji (surrogates D83D DE00) sorts before U+FB33 although its code point is larger.
    assert order == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]
    assert encoded.startswith('{"\\r":"Carriage Return","1":"One","\u0080":"Control"')


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\u0000\u0008\u0009\u000a\u000c\u000d\u001f", '"\\u0000\\b\\t\\n\\f\\r\\u001f"'),
        ('quote " and backslash \\', '"quote \\" and backslash \\\\"'),
        ("/ \u007f \u0080 é 😀", '"/ \u007f \u0080 é 😀"'),  # §3.2.2.2: the rest is literal
    ],
)
def test_rfc8785_section_3_2_2_2_string_escaping(text: str, expected: str) -> None:
    assert canonical_json(text) == expected.encode("utf-8")


# RFC 8785 Appendix B: IEEE 754 binary64 bit patterns and their canonical text.
APPENDIX_B = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


@pytest.mark.parametrize(("bits", "expected"), APPENDIX_B)
def test_rfc8785_appendix_b_numbers(bits: str, expected: str) -> None:
    (value,) = struct.unpack(">d", bytes.fromhex(bits))
    assert canonical_json(value) == expected.encode("ascii")


@pytest.mark.parametrize(
    "value",
    [math.nan, math.inf, -math.inf, 2**53, -(2**53), "\ud800", {1: "x"}, {"a": {"b": b"x"}}],
)
def test_values_without_a_canonical_form_are_refused(value: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        canonical_json(value)


def test_integers_in_the_safe_range_are_written_plainly() -> None:
    assert canonical_json([0, -1, 2**53 - 1, True, None]) == b"[0,-1,9007199254740991,true,null]"


@pytest.mark.parametrize(
    ("auth", "reason", "request_id", "trace_id"),
    [(None, None, None, None), ("mtls", 'rule \u2028 "x"', "r\u00e9q", "4bf92f3577b34da6")],
)
def test_the_entry_fast_path_equals_canonical_json(
    auth: str | None, reason: str | None, request_id: str | None, trace_id: str | None
) -> None:
    details = {"b": [1, "two", None], "a": {"z": True, "é": "ü"}, "\U0001f600": 1}
    fields = (
        42,
        1_700_000_000_123_456,
        "service",
        "spiffe://courtyard/app/ledger",
        auth,
        "access.deny",
        "/apps/expenses/\u00e9",
        "denied",
        reason,
        request_id,
        trace_id,
        canonical_json(details).decode("utf-8"),
    )
    entry = AuditEntry(
        seq=42,
        time_us=1_700_000_000_123_456,
        actor=Actor("service", "spiffe://courtyard/app/ledger", auth),
        action="access.deny",
        target="/apps/expenses/\u00e9",
        outcome="denied",
        reason=reason,
        request_id=request_id,
        trace_id=trace_id,
        details=details,
        prev_hash="",
        entry_hash="",
        leaf_hash="",
    )
    assert entry_bytes(*fields) == canonical_json(entry.canonical_object())
