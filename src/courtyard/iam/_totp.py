"""Time-based one-time passwords (RFC 6238 over RFC 4226 HOTP), each code usable once.

pyotp computes the codes; this module adds what RFC 6238 §5.2 leaves to the verifier: a
window of one step either side for clock drift, constant-time comparison (OWASP ASVS 4.0.3 V2.8)
and refusal of any step at or before the last one accepted, so a code can't be replayed.
A QR code for enrolment is not drawn here: it needs an imaging dependency; hand the
``otpauth://`` URI to the client and let it draw.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable
from typing import Any, Literal

import pyotp

from courtyard.core import Clock
from courtyard.iam._errors import MalformedTotpSecret

TotpAlgorithm = Literal["sha1", "sha256", "sha512"]

_DIGESTS: dict[TotpAlgorithm, Callable[..., Any]] = {
    "sha1": hashlib.sha1,
    "sha256": hashlib.sha256,
    "sha512": hashlib.sha512,
}
# RFC 4226 §4 R6 asks for at least 128 bits of shared secret (160 recommended).
_MIN_SECRET_BYTES = 16


def new_totp_secret() -> str:
    """A fresh 160-bit shared secret, base32 as authenticator apps expect (RFC 4226 §4)."""
    return pyotp.random_base32(length=32)


def provisioning_uri(secret: str, account: str, issuer: str = "Courtyard") -> str:
    """The ``otpauth://totp/...`` URI an authenticator app enrols from (usually as a QR code)."""
    _check_secret(secret)
    return pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=issuer)


class TotpVerifier:
    """Checks TOTP codes against an injected clock, accepting each time step at most once."""

    def __init__(
        self,
        clock: Clock,
        *,
        digits: int = 6,
        period: int = 30,
        window: int = 1,
        algorithm: TotpAlgorithm = "sha1",
    ) -> None:
        # RFC 4226 §5.3: at least six digits; more than ten exceed the 31-bit truncation.
        if not 6 <= digits <= 10:
            raise ValueError(f"digits must be between 6 and 10, not {digits}")
        if period < 1:
            raise ValueError(f"period must be at least 1 second, not {period}")
        if window < 0:
            raise ValueError(f"window must not be negative, not {window}")
        self._clock = clock
        self._digits = digits
        self._period = period
        self._window = window
        self._digest = _DIGESTS[algorithm]

    def current_step(self) -> int:
        """The RFC 6238 time step T = floor((now - T0) / X) with T0 = 0."""
        return int(self._clock.time() // self._period)

    def code_at(self, secret: str, step: int) -> str:
        """The code for time step ``step`` (the HOTP value of counter ``step``)."""
        _check_secret(secret)
        totp = pyotp.TOTP(secret, digits=self._digits, digest=self._digest, interval=self._period)
        return totp.generate_otp(step)

    def verify(self, secret: str, code: str, last_used_step: int | None) -> int | None:
        """The time step ``code`` belongs to, or ``None`` if it is wrong, stale or replayed.

        Store the returned step with the enrolment and pass it back as ``last_used_step``
        next time: any step at or before it is refused (RFC 6238 §5.2, one use per code).
        Spaces in the typed code are ignored; anything else non-numeric is simply wrong.
        """
        typed = code.replace(" ", "")
        well_formed = len(typed) == self._digits and typed.isascii() and typed.isdigit()
        candidate = typed if well_formed else "0" * self._digits
        now = self.current_step()
        accepted: int | None = None
        # Compare against every step in the window, without stopping early, so the time
        # taken does not reveal which step (if any) matched.
        for step in range(now - self._window, now + self._window + 1):
            matches = hmac.compare_digest(self.code_at(secret, step), candidate)
            fresh = last_used_step is None or step > last_used_step
            if matches and fresh and well_formed and accepted is None:
                accepted = step
        return accepted


def _check_secret(secret: str) -> None:
    padded = secret.upper() + "=" * (-len(secret) % 8)
    try:
        raw = base64.b32decode(padded, casefold=False)
    except (binascii.Error, ValueError):
        raise MalformedTotpSecret("not base32") from None
    if len(raw) < _MIN_SECRET_BYTES:
        raise MalformedTotpSecret(f"shorter than {_MIN_SECRET_BYTES * 8} bits")
