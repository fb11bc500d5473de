"""Why a credential operation was refused, worded for the person who has to fix it.

Error tree::

    CourtyardError
    └── IamError
        ├── WeakPassword              a chosen password breaks the policy (.reason)
        ├── WeakHashParameters        argon2id settings below OWASP's floor (.parameter)
        ├── MalformedPasswordHash     a stored hash is not an argon2 hash we can read
        ├── MalformedTotpSecret       a stored TOTP secret is not base32 of >= 128 bits
        └── MalformedApiToken         presented text is not a Courtyard API token

No message ever repeats a password, a secret or a token: these strings end up in logs.
"""

from __future__ import annotations

from courtyard.core import CourtyardError


class IamError(CourtyardError):
    """Root of every error the IAM package raises on purpose."""


class WeakPassword(IamError):
    """A password someone chose breaks the password policy; ``reason`` says which rule."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"password refused: {reason}")
        self.reason = reason


class WeakHashParameters(IamError):
    """A ``PasswordHasher`` was configured below the floor for ``parameter``."""

    def __init__(self, parameter: str, value: int, floor: int) -> None:
        super().__init__(
            f"argon2id {parameter}={value} is below the floor of {floor} "
            "(OWASP Password Storage Cheat Sheet)"
        )
        self.parameter = parameter
        self.value = value
        self.floor = floor


class MalformedPasswordHash(IamError):
    """A stored password hash could not be decoded; the credential row is damaged."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"stored password hash is malformed: {detail}")
        self.detail = detail


class MalformedTotpSecret(IamError):
    """A stored TOTP secret is not base32 of at least 128 bits; the enrolment is damaged."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"stored TOTP secret is malformed: {detail}")
        self.detail = detail


class MalformedApiToken(IamError):
    """Presented text does not have the shape ``<prefix>_<id>_<secret>``."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"not a valid API token: {detail}")
        self.detail = detail
