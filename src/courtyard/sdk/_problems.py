"""The answer to a request whose identity is missing or bad: a problem document (RFC 9457)
with the challenge RFC 9110 §11.6.1 requires on a 401."""

from __future__ import annotations

import json

from courtyard.contracts import IDENTITY_HEADER
from courtyard.sdk._errors import IdentityError, JwksUnavailable, MissingIdentity

RETRY_AFTER = "5"  # seconds; the JWKS cache retries a failed fetch after about this long


def problem(error: IdentityError) -> tuple[int, list[tuple[str, str]], bytes]:
    """(status, headers, body) answering a request refused with ``error``."""
    if isinstance(error, JwksUnavailable):
        # Our fault, not the caller's: the platform's keys are out of reach for now.
        status, title, extra = 503, "Service Unavailable", [("Retry-After", RETRY_AFTER)]
        detail = "the app cannot verify identities right now"
    else:
        status, title = 401, "Unauthorized"
        extra = [("WWW-Authenticate", f'{IDENTITY_HEADER} realm="courtyard"')]
        detail = error.detail if isinstance(error, MissingIdentity) else str(error)
    body = json.dumps(
        {"type": "about:blank", "title": title, "status": status, "detail": detail}
    ).encode()
    headers = [
        ("Content-Type", "application/problem+json"),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
        *extra,
    ]
    return status, headers, body
