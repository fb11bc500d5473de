"""What an app running on Courtyard imports: who is calling (the verified ``Courtyard-Identity``
assertion), for ASGI and WSGI apps; ``courtyard.sdk.testing`` mints assertions for app tests.

Builds on ``courtyard.contracts`` alone, so it works in any app's process. Errors::

    IdentityError
    ├── MissingIdentity   no assertion on the request
    ├── InvalidIdentity   an assertion that may not be trusted (.reason)
    └── JwksUnavailable   the platform's keys could not be fetched (.url, .reason)
"""

from courtyard.sdk._asgi import IdentityMiddleware, scope_identity
from courtyard.sdk._errors import (
    IdentityError,
    InvalidIdentity,
    JwksUnavailable,
    MissingIdentity,
)
from courtyard.sdk._identity import Identity
from courtyard.sdk._jwks import JwksCache, JwksSource, StaticJwks, VerificationKey
from courtyard.sdk._verifier import ALGORITHMS, IdentityVerifier, from_environment
from courtyard.sdk._wsgi import IdentityWSGIMiddleware, wsgi_identity

__all__ = [
    "ALGORITHMS",
    "Identity",
    "IdentityError",
    "IdentityMiddleware",
    "IdentityVerifier",
    "IdentityWSGIMiddleware",
    "InvalidIdentity",
    "JwksCache",
    "JwksSource",
    "JwksUnavailable",
    "MissingIdentity",
    "StaticJwks",
    "VerificationKey",
    "from_environment",
    "scope_identity",
    "wsgi_identity",
]
