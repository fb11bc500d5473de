"""Verifies a ``Courtyard-Identity`` assertion: the platform-signed JWT naming who calls.

Checks (RFC 8725 §3.1-3.2, §3.11; RFC 7519 §4.1): the algorithm is in an allow-list of
asymmetric ones (never ``none``, never HMAC) and matches the key; ``kid`` names a key of the
platform's JWKS; the signature; ``typ`` is not an access token's; ``iss`` is the platform;
``aud`` is this app; ``exp``, ``nbf`` and ``iat`` hold, within a few seconds of leeway.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, TypeGuard

from joserfc import jws, jwt
from joserfc.errors import JoseError

from courtyard.sdk._errors import IdentityError, InvalidIdentity
from courtyard.sdk._identity import Identity
from courtyard.sdk._jwks import JwksCache, JwksSource, VerificationKey

ALGORITHMS = ("ES256", "RS256")
MAX_TOKEN_BYTES = 16 * 1024  # an assertion is well under 2 KiB; refuse to parse anything huge
# Access tokens (RFC 9068 §2.1) must not pass as assertions, even with the right audience.
_FORBIDDEN_TYP = frozenset(("at+jwt", "application/at+jwt"))


class IdentityVerifier:
    """Verifies assertions made for one app (``audience``) by one platform (``issuer``).

    ``jwks`` is where the keys come from; by default a :class:`JwksCache` of
    ``jwks_url`` (``{issuer}/oauth2/jwks``). ``clock`` returns seconds since the epoch.
    """

    def __init__(
        self,
        issuer: str,
        audience: str,
        *,
        jwks_url: str | None = None,
        jwks: JwksSource | None = None,
        clock: Callable[[], float] = time.time,
        leeway: float = 5.0,
    ) -> None:
        if not issuer or not audience:
            raise IdentityError("an IdentityVerifier needs an issuer and an audience")
        self.issuer = issuer
        self.audience = audience
        self.jwks: JwksSource = jwks or JwksCache(
            jwks_url or f"{issuer.rstrip('/')}/oauth2/jwks", clock=clock
        )
        self._clock = clock
        self._leeway = leeway

    def verify(self, token: str | bytes) -> Identity:
        """The identity ``token`` asserts; raises InvalidIdentity (or JwksUnavailable)."""
        kid, alg = self._header(token)
        return self._check(token, self.jwks.key(kid), kid, alg)

    async def averify(self, token: str | bytes) -> Identity:
        """:meth:`verify` for async code: a JWKS fetch, if needed, does not block the loop."""
        kid, alg = self._header(token)
        return self._check(token, await self.jwks.akey(kid), kid, alg)

    def _header(self, token: str | bytes) -> tuple[str, str]:
        """The kid and alg of ``token``, checked before any key is looked up."""
        raw = token.encode("ascii", "replace") if isinstance(token, str) else token
        if not raw or len(raw) > MAX_TOKEN_BYTES:
            raise InvalidIdentity("not a JWT (empty or too large)")
        try:
            header = jws.extract_compact(raw).headers()
        except (JoseError, ValueError, TypeError):
            raise InvalidIdentity("not a JWT (malformed)") from None
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in ALGORITHMS:
            raise InvalidIdentity(f"algorithm {str(alg)[:16]!r} is not allowed")
        if header.get("typ") in _FORBIDDEN_TYP:
            raise InvalidIdentity("an access token is not an identity assertion (typ)")
        if not isinstance(kid, str) or not kid:
            raise InvalidIdentity("the token names no key (kid)")
        return kid, str(alg)

    def _check(
        self, token: str | bytes, found: VerificationKey | None, kid: str, alg: str
    ) -> Identity:
        if found is None:
            raise InvalidIdentity(f"unknown key {kid[:64]!r}")
        if found.alg != alg:
            raise InvalidIdentity(f"algorithm {alg} does not match the key")
        try:
            claims = jwt.decode(token, found.key, algorithms=[alg]).claims
        except (JoseError, ValueError, TypeError):
            raise InvalidIdentity("bad signature") from None
        return self._identity(claims, token)

    def _identity(self, claims: dict[str, Any], token: str | bytes) -> Identity:
        if claims.get("iss") != self.issuer:
            raise InvalidIdentity("issued by someone else than the platform (iss)")
        aud = claims.get("aud")
        audience = [aud] if isinstance(aud, str) else aud
        if not isinstance(audience, list) or self.audience not in audience:
            raise InvalidIdentity(f"not meant for {self.audience!r} (aud)")
        now, leeway = self._clock(), self._leeway
        exp, iat, nbf = claims.get("exp"), claims.get("iat"), claims.get("nbf")
        if not _is_number(exp) or not _is_number(iat) or (nbf is not None and not _is_number(nbf)):
            raise InvalidIdentity("missing or invalid exp or iat")
        if exp <= now - leeway:
            raise InvalidIdentity("expired")
        if iat > now + leeway or (nbf is not None and nbf > now + leeway):
            raise InvalidIdentity("not valid yet (iat or nbf in the future)")
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise InvalidIdentity("missing sub")
        email, name = claims.get("email", ""), claims.get("name", "")
        groups, roles = claims.get("groups", []), claims.get("roles", [])
        if not isinstance(email, str) or not isinstance(name, str):
            raise InvalidIdentity("invalid email or name")
        if not _is_strings(groups) or not _is_strings(roles):
            raise InvalidIdentity("invalid groups or roles")
        return Identity(
            sub=sub,
            email=email,
            name=name,
            groups=tuple(groups),
            roles=tuple(roles),
            act=_actor(claims.get("act")),
            claims=MappingProxyType(claims),
            token=token if isinstance(token, str) else token.decode("ascii"),
        )


def _actor(act: object) -> str | None:
    """The calling service of a mesh call: ``act.sub`` (RFC 8693 §4.1), or None."""
    if act is None:
        return None
    if isinstance(act, dict) and isinstance(act.get("sub"), str) and act["sub"]:
        return str(act["sub"])
    raise InvalidIdentity("invalid act (expected an object with a sub)")


def from_environment(environ: Mapping[str, str] | None = None, **options: Any) -> IdentityVerifier:
    """A verifier for the app instance this process is: the platform gives every instance
    ``COURTYARD_PLATFORM_URL`` (the issuer, serving the JWKS) and ``COURTYARD_APP`` (its name,
    the audience); ``COURTYARD_JWKS_URL``, when set, says where to fetch the keys instead.
    Reads the environment now, at call time; ``options`` go to the verifier."""
    env = os.environ if environ is None else environ
    issuer = env.get("COURTYARD_PLATFORM_URL", "").rstrip("/")
    audience = env.get("COURTYARD_APP", "")
    missing = [
        name
        for name, value in (("COURTYARD_PLATFORM_URL", issuer), ("COURTYARD_APP", audience))
        if not value
    ]
    if missing:
        raise IdentityError(
            f"{' and '.join(missing)} not set: run the app under Courtyard, or set them "
            "(or build an IdentityVerifier yourself)"
        )
    if env.get("COURTYARD_JWKS_URL"):
        options.setdefault("jwks_url", env["COURTYARD_JWKS_URL"])
    return IdentityVerifier(issuer, audience, **options)


def _is_number(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_strings(value: object) -> TypeGuard[list[str]]:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)
