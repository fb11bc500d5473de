"""What the SDK raises, under one root: why a request's identity could not be established, and
why a call through the mesh failed. Readable messages that never echo a token (a bearer proof
must not end up in an app's logs)."""

from __future__ import annotations


class SdkError(Exception):
    """Root of every error the SDK raises."""


class IdentityError(SdkError):
    """The identity of a request could not be established."""


class MissingIdentity(IdentityError):
    """The request carries no ``Courtyard-Identity`` assertion."""

    def __init__(self, detail: str = "the request carries no Courtyard-Identity assertion") -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidIdentity(IdentityError):
    """The assertion is there but may not be trusted: ``reason`` says which check refused it."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"invalid Courtyard-Identity assertion: {reason}")
        self.reason = reason


class JwksUnavailable(IdentityError):
    """The platform's signing keys could not be fetched, so nothing can be verified yet."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot fetch the platform's keys from {url}: {reason}")
        self.url = url
        self.reason = reason
