"""Where the platform's public signing keys come from: a JWKS (RFC 7517 §5) fetched from
``{issuer}/oauth2/jwks`` and cached, or a fixed one (tests, pinned keys).

The cache honours ``Cache-Control: max-age`` (RFC 9111 §5.2.2.1) and refetches when a token
names a key it does not know (the platform rotated its keys), but at most once per
``refetch_interval``: a flood of tokens with made-up ``kid``s cannot hammer the platform.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import httpx
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, RSAKey

from courtyard.sdk._errors import JwksUnavailable

Algorithm = Literal["ES256", "RS256"]
DEFAULT_MAX_AGE = 300.0  # seconds a JWKS is kept when the platform does not say
MAX_MAX_AGE = 86_400.0  # never trust a fetched JWKS for more than a day
MAX_JWKS_BYTES = 1024 * 1024
_MAX_AGE = re.compile(r"(?:^|,)\s*(?:s-)?max-age\s*=\s*\"?(\d+)", re.IGNORECASE)
# Private members of EC and RSA JWKs (RFC 7518 §6.2.2, §6.3.2): never kept by a verifier.
_PRIVATE = frozenset(("d", "p", "q", "dp", "dq", "qi", "oth"))


@dataclass(frozen=True)
class VerificationKey:
    """One public key of the JWKS and the only algorithm it may verify (RFC 8725 §3.1)."""

    kid: str
    alg: Algorithm
    key: ECKey | RSAKey


class JwksSource(Protocol):
    """Finds the public key a token names; both twins may do I/O, neither may block long."""

    def key(self, kid: str) -> VerificationKey | None:
        """The key with ``kid``, or None when the platform has no such key."""
        ...

    async def akey(self, kid: str) -> VerificationKey | None:
        """:meth:`key` for async code."""
        ...


def parse_jwks(document: Mapping[str, Any]) -> dict[str, VerificationKey]:
    """The keys of a JWKS an app may verify with, by kid.

    Only EC P-256 (ES256) and RSA (RS256) keys with a ``kid`` count; "oct" keys never do (a
    shared secret would let anyone holding it sign), nor keys for other uses or algorithms.
    """
    keys: dict[str, VerificationKey] = {}
    items = document.get("keys")
    if not isinstance(items, list):
        return keys
    for item in items:
        found = _public_key(item)
        if found is not None:
            keys[found.kid] = found
    return keys


def _public_key(item: Any) -> VerificationKey | None:
    if not isinstance(item, dict) or not isinstance(item.get("kid"), str):
        return None
    if item.get("use", "sig") != "sig":
        return None
    public = {name: value for name, value in item.items() if name not in _PRIVATE}
    kty, alg, kid = item.get("kty"), item.get("alg"), item["kid"]
    try:
        if kty == "EC" and item.get("crv") == "P-256" and alg in (None, "ES256"):
            return VerificationKey(kid, "ES256", ECKey.import_key(public))
        if kty == "RSA" and alg in (None, "RS256"):
            return VerificationKey(kid, "RS256", RSAKey.import_key(public))
    except (JoseError, ValueError, TypeError):
        return None
    return None


class StaticJwks:
    """A JWKS given up front: what tests and apps with pinned keys use."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self._keys = parse_jwks(document)

    def key(self, kid: str) -> VerificationKey | None:
        return self._keys.get(kid)

    async def akey(self, kid: str) -> VerificationKey | None:
        return self._keys.get(kid)


def max_age(cache_control: str | None, default: float = DEFAULT_MAX_AGE) -> float:
    """Seconds a response may be reused per its ``Cache-Control`` header (RFC 9111 §5.2.2)."""
    if not cache_control:
        return default
    lowered = cache_control.lower()
    if "no-store" in lowered or "no-cache" in lowered:
        return 0.0
    match = _MAX_AGE.search(cache_control)
    return float(match.group(1)) if match else default


class JwksCache:
    """The platform's JWKS fetched over HTTP and cached; thread-safe and async-safe.

    Refetches when the cached copy is older than its ``max-age`` (kept within
    [``refetch_interval``, one day]) or when a token names an unknown key, at most once per
    ``refetch_interval``. If a refetch fails the keys already known stay in use; with no keys
    at all, lookups raise :class:`JwksUnavailable` and the next attempt waits
    ``retry_interval``.
    """

    def __init__(
        self,
        url: str,
        *,
        clock: Callable[[], float] = time.time,
        refetch_interval: float = 30.0,
        retry_interval: float = 5.0,
        timeout: float = 5.0,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url
        self._clock = clock
        self._refetch_interval = refetch_interval
        self._retry_interval = retry_interval
        self._timeout = timeout
        self._transport = transport
        self._async_transport = async_transport
        self._keys: dict[str, VerificationKey] | None = None
        self._expires_at = float("-inf")
        self._last_attempt = float("-inf")
        self._last_failure: str | None = None
        self._fetches = 0
        self._thread_lock = threading.Lock()
        self._async_lock = asyncio.Lock()

    @property
    def fetches(self) -> int:
        """How many fetches were attempted (for tests and metrics)."""
        return self._fetches

    def key(self, kid: str) -> VerificationKey | None:
        with self._thread_lock:
            if self._should_fetch(kid, self._clock()):
                self._store(self._fetch())
            return self._lookup(kid)

    async def akey(self, kid: str) -> VerificationKey | None:
        async with self._async_lock:
            if self._should_fetch(kid, self._clock()):
                self._store(await self._afetch())
            return self._lookup(kid)

    def _should_fetch(self, kid: str, now: float) -> bool:
        since = now - self._last_attempt
        if self._last_failure is not None and since < self._retry_interval:
            return False
        if self._keys is None or now >= self._expires_at:
            return True
        return kid not in self._keys and since >= self._refetch_interval

    def _lookup(self, kid: str) -> VerificationKey | None:
        if self._keys is None:
            raise JwksUnavailable(self.url, self._last_failure or "not fetched yet")
        return self._keys.get(kid)

    def _store(self, outcome: tuple[dict[str, VerificationKey], float] | str) -> None:
        now = self._clock()
        self._last_attempt = now
        if isinstance(outcome, str):
            self._last_failure = outcome
            return
        keys, age = outcome
        self._keys, self._last_failure = keys, None
        self._expires_at = now + min(max(age, self._refetch_interval), MAX_MAX_AGE)

    def _fetch(self) -> tuple[dict[str, VerificationKey], float] | str:
        self._fetches += 1
        try:
            with httpx.Client(transport=self._transport, timeout=self._timeout) as client:
                response = client.get(self.url, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"
        return _read(response)

    async def _afetch(self) -> tuple[dict[str, VerificationKey], float] | str:
        self._fetches += 1
        try:
            async with httpx.AsyncClient(
                transport=self._async_transport, timeout=self._timeout
            ) as client:
                response = await client.get(self.url, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"
        return _read(response)


def _read(response: httpx.Response) -> tuple[dict[str, VerificationKey], float] | str:
    """The keys and max-age of a JWKS response, or why it is unusable."""
    if response.status_code != 200:
        return f"HTTP {response.status_code}"
    if len(response.content) > MAX_JWKS_BYTES:
        return "the JWKS is too large"
    try:
        document = response.json()
    except ValueError:
        return "the JWKS is not JSON"
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        return 'the JWKS has no "keys" list'
    return parse_jwks(document), max_age(response.headers.get("cache-control"))
