"""The end user's assertion a workload passes on (``Courtyard-On-Behalf-Of``): a
``Courtyard-Identity`` the platform signed for the caller, checked so that a mesh call may
name that user as ``sub`` only while the assertion is the caller's and still valid.

Checks (RFC 8725 §3.1-3.2): ``alg`` ES256 only, ``typ`` JWT, ``kid`` in the platform's JWKS
(never fetched), signature and ``iss`` once per assertion string; ``exp`` and ``aud`` == the
calling app on every call.
"""

from __future__ import annotations

from typing import Any

from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from courtyard.contracts import PLATFORM_ROLES, GatewayAuth, IdentityClaims
from courtyard.gateway._tokens import is_number, is_strings, public_key

CACHE_SIZE = 10_000  # assertion strings kept before starting afresh


class OnBehalf:
    """A verified end-user assertion: who it names, for which app, until when."""

    __slots__ = ("audience", "claims", "expires_at")

    def __init__(self, claims: IdentityClaims, audience: str, expires_at: float) -> None:
        self.claims = claims
        self.audience = audience
        self.expires_at = expires_at


class OnBehalfVerifier:
    """Verifies ``Courtyard-Identity`` assertions for one JWKS and issuer, caching each
    assertion's outcome (what does not change with time)."""

    __slots__ = ("_cache", "_issuer", "_keys")

    def __init__(self, auth: GatewayAuth) -> None:
        self._issuer = auth["issuer"]
        self._keys: dict[str, ECKey] = {}
        for item in auth["jwks"].get("keys", ()):
            found = public_key(item)
            if found is not None and found[0] == "ES256" and isinstance(found[1], ECKey):
                self._keys[str(item["kid"])] = found[1]
        self._cache: dict[bytes, OnBehalf | str] = {}

    def check(self, token: bytes, caller: str, wall: float) -> OnBehalf | str:
        """The user ``token`` names for a call by ``caller`` now, or why it may not be used."""
        outcome = self._cache.get(token)
        if outcome is None:
            outcome = self._verify(token)
            if len(self._cache) >= CACHE_SIZE:
                self._cache.clear()
            self._cache[token] = outcome
        if isinstance(outcome, str):
            return outcome
        if outcome.audience != caller:
            return "on-behalf-of assertion issued to another app"
        if outcome.expires_at <= wall:
            return "on-behalf-of assertion expired"
        return outcome

    def _verify(self, token: bytes) -> OnBehalf | str:
        try:
            header = jws.extract_compact(token).headers()
        except (JoseError, ValueError, TypeError):
            return "malformed on-behalf-of assertion"
        key = self._keys.get(str(header.get("kid")))
        if key is None:
            return "on-behalf-of assertion: unknown kid"
        if header.get("alg") != "ES256" or header.get("typ") != "JWT":
            return "on-behalf-of assertion: not an identity assertion (alg, typ)"
        try:
            claims: dict[str, Any] = jwt.decode(token, key, algorithms=["ES256"]).claims
        except (JoseError, ValueError, TypeError):
            return "on-behalf-of assertion: bad signature"
        if claims.get("iss") != self._issuer:
            return "on-behalf-of assertion: wrong issuer"
        return _on_behalf(claims)


def _on_behalf(claims: dict[str, Any]) -> OnBehalf | str:
    sub, aud, exp = claims.get("sub"), claims.get("aud"), claims.get("exp")
    if not isinstance(sub, str) or not sub or not isinstance(aud, str) or not is_number(exp):
        return "on-behalf-of assertion: missing sub, aud or exp"
    email, name = claims.get("email", ""), claims.get("name", "")
    groups, roles = claims.get("groups", []), claims.get("roles", [])
    if not isinstance(email, str) or not isinstance(name, str):
        return "on-behalf-of assertion: invalid email or name"
    if not is_strings(groups) or not is_strings(roles):
        return "on-behalf-of assertion: invalid groups or roles"
    # The roles the user holds in the calling app mean nothing in the target: only platform
    # roles travel on.
    kept = [role for role in roles if role in PLATFORM_ROLES]
    identity = IdentityClaims(sub=sub, email=email, name=name, groups=list(groups), roles=kept)
    return OnBehalf(identity, aud, float(exp))
