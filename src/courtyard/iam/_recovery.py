"""One-time recovery codes: the way back in when the second factor is lost (OWASP ASVS V2.6).

Each code carries 80 random bits, written as four groups of four Crockford base32 characters
(no I, L, O or U to misread). They are stored as salted SHA-256, not argon2: a slow hash
protects guessable human passwords, but 2^80 possibilities stay out of reach even at billions
of SHA-256 guesses a second (OWASP Password Storage Cheat Sheet). The per-code salt is what
ASVS 4.0.3 V2.6.2 asks of look-up secrets under 112 bits.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence

# Crockford's base32 alphabet (https://www.crockford.com/base32.html), lower case.
_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_GROUPS = 4
_GROUP_LENGTH = 4
_CODE_LENGTH = _GROUPS * _GROUP_LENGTH
_SALT_BYTES = 16
_SCHEME = "sha256"
# Crockford decoding: read the letters people confuse as the digits they resemble.
_CONFUSABLE = str.maketrans({"o": "0", "i": "1", "l": "1"})


def new_recovery_codes(n: int = 10) -> list[str]:
    """``n`` fresh codes such as ``"7k2m-x9qa-0rst-vw2z"``; show them once, store their hashes."""
    if n < 1:
        raise ValueError("n must be at least 1")
    codes = []
    for _ in range(n):
        raw = "".join(secrets.choice(_ALPHABET) for _ in range(_CODE_LENGTH))
        groups = [raw[i : i + _GROUP_LENGTH] for i in range(0, _CODE_LENGTH, _GROUP_LENGTH)]
        codes.append("-".join(groups))
    return codes


def hash_recovery_code(code: str) -> str:
    """What to store for ``code``: ``sha256$<salt hex>$<digest hex>`` with a fresh salt.

    Spacing, dashes and case in ``code`` don't matter.
    """
    salt = secrets.token_hex(_SALT_BYTES)
    return f"{_SCHEME}${salt}${_digest(salt, _canonical(code))}"


def use_recovery_code(hashes: Sequence[str], code: str) -> tuple[str, ...] | None:
    """Spend ``code``: the hashes that remain without it, or ``None`` if it matches none.

    Store the returned tuple in place of ``hashes`` so that the code works only once. Every
    stored hash is compared, in constant time, whatever matches first; entries that are not
    in the stored form never match.
    """
    canonical = _canonical(code)
    well_formed = len(canonical) == _CODE_LENGTH and all(c in _ALPHABET for c in canonical)
    found: int | None = None
    for index, stored in enumerate(hashes):
        scheme, _, rest = stored.partition("$")
        salt, _, digest = rest.partition("$")
        presented = _digest(salt, canonical)
        matches = hmac.compare_digest(digest.encode("utf-8"), presented.encode("ascii"))
        if matches and scheme == _SCHEME and well_formed and found is None:
            found = index
    if found is None:
        return None
    return tuple(stored for index, stored in enumerate(hashes) if index != found)


def _digest(salt: str, canonical: str) -> str:
    material = f"{salt}${canonical}".encode("utf-8", "replace")
    return hashlib.sha256(material).hexdigest()


def _canonical(code: str) -> str:
    squeezed = "".join(code.split()).replace("-", "").lower()
    return squeezed.translate(_CONFUSABLE)
