"""Password storage with argon2id and the rules for choosing a password.

Parameters follow the OWASP Password Storage Cheat Sheet (argon2id, at least m=19 MiB, t=2,
p=1) and refuse anything below; the policy follows NIST SP 800-63B §5.1.1.2 (8 to 1024
characters, NFKC-normalised, no well-known passwords, no composition rules) and OWASP ASVS
4.0.3 V2.1/V2.4; ``dummy_verify`` makes an unknown user cost the same time as a wrong
password (OWASP Authentication Cheat Sheet, "Authentication and Error Messages").
"""

from __future__ import annotations

import contextlib
import secrets
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from courtyard.iam._common_passwords import COMMON_PASSWORDS
from courtyard.iam._errors import MalformedPasswordHash, WeakHashParameters, WeakPassword

# OWASP Password Storage Cheat Sheet, "Argon2id": m=19456 KiB, t=2, p=1 is the minimum.
MIN_MEMORY_COST = 19_456
MIN_TIME_COST = 2
MIN_PARALLELISM = 1
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024
_ARGON2_VERSIONS = frozenset({0x10, 0x13})


def _normalize(password: str) -> bytes:
    # NIST SP 800-63B §5.1.1.2: normalise Unicode (NFKC) so the same typed password always
    # hashes the same, whatever the keyboard or OS composed.
    return unicodedata.normalize("NFKC", password).encode("utf-8")


@dataclass(frozen=True)
class PasswordPolicy:
    """What a newly chosen password must satisfy; apply it when a person picks a password.

    It is kept apart from hashing on purpose: an existing password that predates a stricter
    policy must still verify and be rehashed on sign-in.
    """

    min_length: int = MIN_PASSWORD_LENGTH
    max_length: int = MAX_PASSWORD_LENGTH

    def check(self, password: str, *, context: Iterable[str] = ()) -> None:
        """Raise :class:`WeakPassword` unless ``password`` may be chosen.

        ``context`` holds words specific to this account (user name, e-mail, service name)
        that the password must not equal, as SP 800-63B asks.
        """
        normalized = unicodedata.normalize("NFKC", password)
        length = len(normalized)
        if length < self.min_length:
            raise WeakPassword(f"it must be at least {self.min_length} characters long")
        if length > self.max_length:
            raise WeakPassword(f"it must be at most {self.max_length} characters long")
        folded = normalized.casefold()
        if folded in COMMON_PASSWORDS:
            raise WeakPassword("it is one of the most commonly used passwords")
        if len(set(folded)) == 1:
            raise WeakPassword("it repeats a single character")
        for word in context:
            if word and folded == unicodedata.normalize("NFKC", word).casefold():
                raise WeakPassword("it must not be the same as your account name or e-mail")


class PasswordHasher:
    """Hash and verify passwords with argon2id at or above OWASP's floor.

    The default costs a little more than the floor (t=3 rather than 2). Raising any
    parameter later makes :meth:`needs_rehash` true for older hashes, so they upgrade on the
    next successful sign-in.
    """

    def __init__(
        self,
        *,
        memory_cost: int = MIN_MEMORY_COST,
        time_cost: int = 3,
        parallelism: int = MIN_PARALLELISM,
    ) -> None:
        for name, value, floor in (
            ("memory_cost", memory_cost, MIN_MEMORY_COST),
            ("time_cost", time_cost, MIN_TIME_COST),
            ("parallelism", parallelism, MIN_PARALLELISM),
        ):
            if value < floor:
                raise WeakHashParameters(name, value, floor)
        self._hasher = argon2.PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_cost,
            parallelism=parallelism,
            hash_len=32,
            salt_len=16,
            type=argon2.Type.ID,
        )
        self._dummy_hash: str | None = None

    @property
    def parameters(self) -> argon2.Parameters:
        """The argon2 parameters new hashes get."""
        h = self._hasher
        return argon2.Parameters(
            type=argon2.Type.ID,
            version=argon2.low_level.ARGON2_VERSION,
            salt_len=h.salt_len,
            hash_len=h.hash_len,
            time_cost=h.time_cost,
            memory_cost=h.memory_cost,
            parallelism=h.parallelism,
        )

    def hash(self, password: str) -> str:
        """Return the encoded argon2id hash (PHC string, salt included) of ``password``."""
        return self._hasher.hash(_normalize(password))

    def verify(self, stored: str, password: str) -> bool:
        """Whether ``password`` matches ``stored``; false, never an error, on a wrong password.

        The comparison inside argon2 is constant time. A stored hash that cannot be decoded
        raises :class:`MalformedPasswordHash`: that is damaged data, not a failed sign-in.
        """
        if len(password) > MAX_PASSWORD_LENGTH * 4:
            # Refuse absurd input without telling it apart by timing.
            self.dummy_verify()
            return False
        _read_parameters(stored)
        try:
            return self._hasher.verify(stored, _normalize(password))
        except VerifyMismatchError:
            return False
        except (InvalidHashError, VerificationError) as error:
            raise MalformedPasswordHash(str(error) or type(error).__name__) from None

    def needs_rehash(self, stored: str) -> bool:
        """Whether ``stored`` was made with weaker settings than this hasher's (or not argon2id).

        Lowering the configuration never asks for a rehash: hashes only move up.
        """
        old = _read_parameters(stored)
        new = self.parameters
        return (
            old.type is not argon2.Type.ID
            or old.version < new.version
            or old.memory_cost < new.memory_cost
            or old.time_cost < new.time_cost
            or old.parallelism < new.parallelism
            or old.hash_len < new.hash_len
            or old.salt_len < new.salt_len
        )

    def dummy_verify(self) -> None:
        """Spend the time a real verification takes, for a user who does not exist.

        Call it on the unknown-user path so that "no such user" and "wrong password" take
        the same time (OWASP Authentication Cheat Sheet). The dummy hash is made
        on first use, from a random password nobody knows.
        """
        if self._dummy_hash is None:
            self._dummy_hash = self._hasher.hash(secrets.token_bytes(32))
        with contextlib.suppress(VerifyMismatchError):
            self._hasher.verify(self._dummy_hash, b"\x00")


def _read_parameters(stored: str) -> argon2.Parameters:
    try:
        parameters = argon2.extract_parameters(stored)
    except InvalidHashError:
        raise MalformedPasswordHash("not an encoded argon2 hash") from None
    # Argon2 has versions 0x10 and 0x13 (RFC 9106 §3.1); anything else is damage.
    if parameters.version not in _ARGON2_VERSIONS:
        raise MalformedPasswordHash(f"unknown argon2 version {parameters.version}")
    return parameters
