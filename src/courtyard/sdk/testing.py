"""Test kit for app authors: mint ``Courtyard-Identity`` assertions with a key of your own and
verify them with a matching verifier, so an app's tests need no running platform.

    minter = IdentityMinter(audience="expenses")
    app = create_app(verifier=minter.verifier())
    client.get("/", headers=minter.headers(name="Dana", groups=["finance"]))
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from courtyard.contracts import IDENTITY_HEADER
from courtyard.sdk._jwks import StaticJwks
from courtyard.sdk._verifier import IdentityVerifier

DEFAULT_ISSUER = "http://courtyard.test"
DEFAULT_AUDIENCE = "app"


class ManualClock:
    """A wall clock (seconds since the epoch) that moves only when a test calls
    :meth:`advance`: pass it as ``clock`` to the minter and the verifier to test expiry
    without sleeping."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class IdentityMinter:
    """Signs assertions as the platform would, with a key generated for this minter.

    ``clock`` (seconds since the epoch) sets ``iat``; share it with the verifier to test
    expiry without sleeping.
    """

    def __init__(
        self,
        issuer: str = DEFAULT_ISSUER,
        audience: str = DEFAULT_AUDIENCE,
        *,
        alg: Literal["ES256", "RS256"] = "ES256",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.alg = alg
        self._clock = clock
        key: ECKey | RSAKey = (
            ECKey.generate_key("P-256", auto_kid=True)
            if alg == "ES256"
            else RSAKey.generate_key(2048, auto_kid=True)
        )
        self.key = key

    @property
    def kid(self) -> str:
        """The key id (RFC 7638 thumbprint) every minted assertion names."""
        return str(self.key.kid)

    def mint(
        self,
        sub: str = "u_test",
        email: str = "test@example.com",
        name: str = "Test User",
        groups: Iterable[str] = (),
        roles: Iterable[str] = (),
        *,
        aud: str | None = None,
        ttl: int = 60,
        act: str | None = None,
        **extra: Any,
    ) -> str:
        """A signed assertion; ``act`` names the calling service of a mesh call, ``extra``
        adds or overrides claims (``iss``, ``iat``, ``exp``, anything)."""
        iat = int(self._clock())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience if aud is None else aud,
            "iat": iat,
            "exp": iat + ttl,
            "sub": sub,
            "email": email,
            "name": name,
            "groups": list(groups),
            "roles": list(roles),
        }
        if act is not None:
            claims["act"] = {"sub": act}
        claims.update(extra)
        return self.sign(claims)

    def sign(self, claims: Mapping[str, Any], header: Mapping[str, Any] | None = None) -> str:
        """Sign exactly ``claims`` (and ``header`` over the default one): for testing that an
        app refuses odd assertions."""
        full = {"alg": self.alg, "typ": "JWT", "kid": self.kid, **(header or {})}
        return jwt.encode(full, dict(claims), self.key, algorithms=[str(full["alg"])])

    def headers(self, **claims: Any) -> dict[str, str]:
        """``{"Courtyard-Identity": <assertion>}``; ``claims`` as for :meth:`mint`."""
        return {IDENTITY_HEADER: self.mint(**claims)}

    def jwks(self) -> dict[str, Any]:
        """The public JWKS (RFC 7517 §5) the assertions verify against: serve it at
        ``{issuer}/oauth2/jwks`` to test an app that fetches it."""
        public = self.key.as_dict(private=False)
        return {"keys": [{**public, "kid": self.kid, "alg": self.alg, "use": "sig"}]}

    def verifier(self, audience: str | None = None, **options: Any) -> IdentityVerifier:
        """A verifier that trusts this minter's key alone (an in-memory JWKS, no fetching)."""
        options.setdefault("clock", self._clock)
        return IdentityVerifier(
            self.issuer,
            self.audience if audience is None else audience,
            jwks=StaticJwks(self.jwks()),
            **options,
        )
