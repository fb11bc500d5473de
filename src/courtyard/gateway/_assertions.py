"""The ``Courtyard-Identity`` assertion an app receives: a short-lived ES256 JWT naming the
caller (and, for a mesh call, the calling workload in ``act``), signed by the gateway and
reused while more than half its lifetime remains, so the hot path reads a dictionary instead
of signing (DESIGN.md, "Identity to apps").
"""

from __future__ import annotations

from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from courtyard.contracts import IDENTITY_HEADER, GatewayAuth, IdentityClaims, claims_for_app
from courtyard.gateway._config import InvalidSnapshot
from courtyard.gateway._credentials import Caller

MAX_TTL = 60  # seconds: an assertion is a proof for one request, not a session
CACHE_KEYS = 50_000  # credentials with cached assertions before starting afresh
_PREFIX = IDENTITY_HEADER.encode() + b": "


def signing_key(auth: GatewayAuth) -> ECKey:
    """The private EC key assertions are signed with; raises InvalidSnapshot."""
    item: Any = auth["signing_key"]
    if not isinstance(item, dict) or item.get("kty") != "EC" or "d" not in item:
        raise InvalidSnapshot("snapshot auth.signing_key: expected a private EC JWK")
    if not isinstance(item.get("kid"), str) or item.get("alg", "ES256") != "ES256":
        raise InvalidSnapshot("snapshot auth.signing_key: expected a kid and alg ES256")
    try:
        return ECKey.import_key(item)
    except (JoseError, ValueError, TypeError) as exc:
        raise InvalidSnapshot(f"snapshot auth.signing_key: {exc}") from None


class AssertionSigner:
    """Signs assertions for one key and issuer, cached per (credential key, app).

    The cache is dropped whole when the snapshot changes and per credential when the
    control plane changes or revokes it.
    """

    __slots__ = ("_cache", "_header", "_issuer", "_key", "_mesh", "_ttl")

    def __init__(self, auth: GatewayAuth) -> None:
        self._key = signing_key(auth)
        self._issuer = auth["issuer"]
        self._ttl = max(1, min(int(auth["assertion_ttl"]), MAX_TTL))
        self._header = {"alg": "ES256", "typ": "JWT", "kid": auth["signing_key"]["kid"]}
        # credential key -> app -> (header line, wall time to sign afresh)
        self._cache: dict[str, dict[str, tuple[bytes, float]]] = {}
        # workload credential key -> (on-behalf-of assertion, app) -> the same
        self._mesh: dict[str, dict[tuple[str, str], tuple[bytes, float]]] = {}

    def line(self, caller: Caller, app: str, wall: float) -> bytes:
        """``Courtyard-Identity: <jwt>\\r\\n`` for ``caller`` at ``app``."""
        per_app = self._cache.get(caller.key)
        if per_app is not None:
            entry = per_app.get(app)
            if entry is not None and entry[1] > wall:
                return entry[0]
        else:
            if len(self._cache) >= CACHE_KEYS:
                self._cache.clear()
            per_app = self._cache[caller.key] = {}
        claims = claims_for_app(caller.identity, caller.app_roles, app)
        entry = self._sign(claims, app, wall, caller.expires_at, None)
        per_app[app] = entry
        return entry[0]

    def mesh_line(
        self,
        caller: Caller,
        claims: IdentityClaims,
        actor: str,
        app: str,
        wall: float,
        *,
        until: float,
        on_behalf: str = "",
    ) -> bytes:
        """The assertion of a mesh call to ``app``: ``claims`` (the end user's, or the calling
        workload's own), with ``act.sub`` = ``actor`` (RFC 8693 §4.1), ending by ``until``.

        Cached per (workload credential, on-behalf-of assertion, app) like :meth:`line`.
        """
        per_call = self._mesh.get(caller.key)
        if per_call is not None:
            entry = per_call.get((on_behalf, app))
            if entry is not None and entry[1] > wall:
                return entry[0]
        else:
            if len(self._mesh) >= CACHE_KEYS:
                self._mesh.clear()
            per_call = self._mesh[caller.key] = {}
        if len(per_call) >= CACHE_KEYS:
            per_call.clear()
        entry = self._sign(claims, app, wall, until, actor)
        per_call[on_behalf, app] = entry
        return entry[0]

    def _sign(
        self, claims: IdentityClaims, app: str, wall: float, until: float, actor: str | None
    ) -> tuple[bytes, float]:
        """(header line, wall time to sign afresh) of one assertion."""
        iat = int(wall)
        # A credential ending sooner than the assertion shortens it (never outlives its proof).
        exp = min(iat + self._ttl, int(until))
        body: dict[str, Any] = {
            "iss": self._issuer,
            "aud": app,
            "iat": iat,
            "exp": exp,
            "sub": claims["sub"],
            "email": claims["email"],
            "name": claims["name"],
            "groups": claims["groups"],
            "roles": claims["roles"],
        }
        if actor is not None:
            body["act"] = {"sub": actor}
        token = jwt.encode(self._header, body, self._key, algorithms=["ES256"])
        return _PREFIX + token.encode() + b"\r\n", iat + (exp - iat) / 2

    def forget(self, keys: set[str] | None) -> None:
        """Drop the assertions of ``keys`` (None: all of them)."""
        if keys is None:
            self._cache.clear()
            self._mesh.clear()
            return
        for key in keys:
            self._cache.pop(key, None)
            self._mesh.pop(key, None)
