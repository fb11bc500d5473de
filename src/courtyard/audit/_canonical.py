"""RFC 8785 JSON Canonicalization Scheme (JCS): the one byte form every audit hash is taken over.

Two verifiers that parse an entry with different JSON libraries must hash the same bytes, so the
encoding is fixed by the RFC rather than by ``json.dumps``' options.
"""

from __future__ import annotations

import math
from json.encoder import encode_basestring
from typing import Final

# Integers beyond 2^53 do not survive an IEEE 754 double, which is what RFC 8785 §3.2.2.3
# (and every JavaScript verifier) reads numbers as.
MAX_SAFE_INTEGER: Final = 2**53 - 1

# Version of the entry layout inside the hashed bytes (the "v" member).
ENTRY_VERSION: Final = 1


def canonical_json(value: object) -> bytes:
    """The RFC 8785 canonical UTF-8 encoding of ``value``.

    Accepts ``None``, ``bool``, ``int`` (|x| ≤ 2^53 - 1), finite ``float``, ``str`` (no lone
    surrogates), ``list``/``tuple`` and ``dict`` with ``str`` keys; raises ``ValueError``
    (or ``TypeError`` for other types).
    """
    text = _encode(value)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        # RFC 8785 §3.2.2.2 (via I-JSON, RFC 7493 §2.1): lone surrogates are not allowed.
        raise ValueError("a string holds a lone surrogate (not valid Unicode)") from exc


def _encode(value: object) -> str:
    # bool before int: True is an int in Python.
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise ValueError(f"integer {value} is outside ±(2^53 - 1) and would lose precision")
        return str(value)
    if isinstance(value, float):
        return es_number(value)
    if isinstance(value, str):
        # RFC 8785 §3.2.2.2: escape only '"', '\\' and U+0000..U+001F, the latter as \b \t \n
        # \f \r or \u00xx with lowercase hex; everything else as is. json's C encoder with
        # ensure_ascii off does exactly that.
        return encode_basestring(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(_encode(item) for item in value) + "]"
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise TypeError(f"object keys must be strings, not {type(key).__name__}")
        # RFC 8785 §3.2.3: members sorted by their names as arrays of UTF-16 code units;
        # comparing UTF-16BE bytes compares those units.
        keys = sorted(value, key=lambda key: key.encode("utf-16-be", "surrogatepass"))
        return "{" + ",".join(f"{encode_basestring(k)}:{_encode(value[k])}" for k in keys) + "}"
    raise TypeError(f"{type(value).__name__} has no JSON form")


def es_number(value: float) -> str:
    """A double as ECMAScript's Number::toString writes it (RFC 8785 §3.2.2.3).

    ``repr`` already gives the shortest digits that round-trip; only their layout differs.
    """
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"{value} has no JSON form (RFC 8785 §3.2.2.3)")
    if value == 0:
        return "0"  # also -0
    if value < 0:
        return "-" + es_number(-value)
    mantissa, _, exponent = repr(value).partition("e")
    whole, _, fraction = mantissa.partition(".")
    all_digits = whole + fraction
    digits = all_digits.lstrip("0")
    # n as in ECMA-262 Number::toString: value = 0.d1d2...dk * 10^n.
    n = len(whole) + (int(exponent) if exponent else 0) - (len(all_digits) - len(digits))
    digits = digits.rstrip("0")
    k = len(digits)
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return f"{digits[:n]}.{digits[n:]}"
    if -6 < n <= 0:
        return "0." + "0" * -n + digits
    power = n - 1
    lead = digits[0] + ("." + digits[1:] if k > 1 else "")
    return f"{lead}e{'+' if power >= 0 else '-'}{abs(power)}"


def _optional(text: str | None) -> str:
    return "null" if text is None else encode_basestring(text)


def entry_bytes(
    seq: int,
    time_us: int,
    actor_kind: str,
    actor_id: str,
    actor_auth: str | None,
    action: str,
    target: str,
    outcome: str,
    reason: str | None,
    request_id: str | None,
    trace_id: str | None,
    details: str,
) -> bytes:
    """The canonical bytes of one entry, ``details`` being its canonical JSON text already.

    Equal to ``canonical_json(entry_object(...))`` (a test holds the two together) but with
    no sorting or recursion, since verifying a million entries spends its time here. Members
    appear in RFC 8785 §3.2.3 order.
    """
    s = encode_basestring
    return (
        f'{{"action":{s(action)},"actor":{{"auth":{_optional(actor_auth)},"id":{s(actor_id)},'
        f'"kind":{s(actor_kind)}}},"details":{details},"outcome":{s(outcome)},'
        f'"reason":{_optional(reason)},"requestId":{_optional(request_id)},"seq":{seq},'
        f'"target":{s(target)},"time":{time_us},"traceId":{_optional(trace_id)},'
        f'"v":{ENTRY_VERSION}}}'
    ).encode()
