"""Personal access tokens and API keys: issue, parse, verify and decide whether one may be used.

A token reads ``<prefix>_<id>_<secret>``: the prefix makes leaked tokens easy to spot by
secret scanners, the id finds the stored record without a search, and the secret is 256 bits
from ``secrets.token_urlsafe`` (a CSPRNG, OWASP ASVS V6.3). Only SHA-256 of the secret is stored:
with 256 random bits neither a slow hash nor a keyed HMAC adds anything, since nobody can
enumerate the space; the digest just keeps a database dump from being a list of live keys.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from courtyard.iam._errors import MalformedApiToken

DEFAULT_TOKEN_PREFIX = "cy_pat"  # noqa: S105  (a public marker, not a secret)
_SECRET_BYTES = 32
_ID_BYTES = 8
_PREFIX = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")
_ID = re.compile(r"[0-9a-f]{16}")
# token_urlsafe(32) is 43 characters of the URL-safe base64 alphabet, unpadded.
_SECRET = re.compile(r"[A-Za-z0-9_-]{43}")


@dataclass(frozen=True)
class IssuedToken:
    """A new token: show ``token`` once to its owner; store ``token_id`` and ``secret_hash``."""

    token: str
    token_id: str
    secret_hash: str

    @property
    def lookup_hash(self) -> str:
        """SHA-256 hex of the whole token: the key gateways hold (``GatewayCredential.key``)."""
        return token_lookup_hash(self.token)

    def __repr__(self) -> str:
        # Keep the secret out of logs and tracebacks.
        return f"IssuedToken(token_id={self.token_id!r}, token=<hidden>)"


@dataclass(frozen=True)
class ApiTokenRecord:
    """What is stored about a token besides its hash. Times are epoch seconds (Clock.time)."""

    id: str
    owner: str
    scopes: frozenset[str]
    created_at: float
    expires_at: float | None = None
    revoked_at: float | None = None


def new_api_token(prefix: str = DEFAULT_TOKEN_PREFIX) -> IssuedToken:
    """Issue a token ``<prefix>_<16 hex id>_<43-character secret>``."""
    _check_prefix(prefix)
    token_id = secrets.token_hex(_ID_BYTES)
    secret = secrets.token_urlsafe(_SECRET_BYTES)
    return IssuedToken(
        token=f"{prefix}_{token_id}_{secret}",
        token_id=token_id,
        secret_hash=hash_api_secret(secret),
    )


def parse_api_token(text: str, prefix: str = DEFAULT_TOKEN_PREFIX) -> tuple[str, str]:
    """Split a presented token into ``(token_id, secret)``; raise :class:`MalformedApiToken`.

    The secret may itself contain ``_``, so the split relies on the fixed prefix and the id
    having no ``_``. Error messages never echo the presented text.
    """
    _check_prefix(prefix)
    text = text.strip()
    head = prefix + "_"
    if not text.startswith(head):
        raise MalformedApiToken(f"it does not start with {head!r}")
    token_id, separator, secret = text[len(head) :].partition("_")
    if not separator or _ID.fullmatch(token_id) is None:
        raise MalformedApiToken("the token id is missing or malformed")
    if _SECRET.fullmatch(secret) is None:
        raise MalformedApiToken("the secret part is missing or malformed")
    return token_id, secret


def hash_api_secret(secret: str) -> str:
    """The SHA-256 hex digest stored for a token's secret."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def token_lookup_hash(token: str) -> str:
    """SHA-256 hex of the exact presented token, as gateways key their credential table."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def verify_api_token(stored_hash: str, secret: str) -> bool:
    """Whether ``secret`` hashes to ``stored_hash``, compared in constant time."""
    presented = hash_api_secret(secret).encode("ascii")
    return hmac.compare_digest(stored_hash.encode("utf-8"), presented)


def token_is_usable(record: ApiTokenRecord, now: float, needed_scope: str) -> bool:
    """Whether the token may be used at ``now`` for ``needed_scope``.

    A revoked token is refused whatever ``revoked_at`` says about time (clocks between nodes
    drift; revocation must not wait for one to catch up). ``expires_at`` is exclusive.
    """
    if record.revoked_at is not None:
        return False
    if record.expires_at is not None and now >= record.expires_at:
        return False
    return needed_scope in record.scopes


def _check_prefix(prefix: str) -> None:
    if _PREFIX.fullmatch(prefix) is None:
        raise ValueError(f"token prefix {prefix!r} must be lower-case letters, digits and _")
