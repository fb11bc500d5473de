"""Bearer access tokens (RFC 9068 JWTs) verified locally against the platform's JWKS, once
per token string: the data plane never asks the control plane who a caller is.

Checks (RFC 8725 §3.1-3.2, RFC 9068 §4): alg in an allow-list of asymmetric algorithms
(never ``none``, never HMAC), ``typ`` at+jwt, ``kid`` in the JWKS (unknown: refused, never
fetched), ``iss``, signature; per request: ``exp``, ``nbf``/``iat`` (small leeway), ``aud``
and revocation by ``jti``.
"""

from __future__ import annotations

from typing import Any, TypeGuard

from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, RSAKey

from courtyard.contracts import GATEWAY_AUDIENCE, GatewayAuth, IdentityClaims
from courtyard.gateway._credentials import Caller, credential_key

# RFC 8725 §3.1: verify only with algorithms chosen here, each tied to its key type.
ALGORITHMS = {"ES256": "EC", "RS256": "RSA"}
LEEWAY = 30.0  # seconds of clock skew tolerated for nbf and iat (never for exp)
CACHE_SIZE = 10_000  # verified token strings kept before starting afresh
# Refusals that leave the token someone else's (an app's own scheme): it is forwarded to
# public apps. A token naming one of the platform's keys never is, valid or not.
MALFORMED = "malformed token"
UNKNOWN_KID = "unknown kid"
FOREIGN = frozenset((MALFORMED, UNKNOWN_KID))


class TokenVerifier:
    """Verifies access tokens for one JWKS and issuer, caching each token's outcome.

    The cache holds what does not change with time (signature, header, issuer, claim
    shapes): a :class:`Caller` or the reason it was refused. What changes with time or with
    the request (expiry, audience, revocation) is checked by :meth:`check` every time.
    """

    __slots__ = ("_cache", "_issuer", "_keys")

    def __init__(self, auth: GatewayAuth) -> None:
        self._issuer = auth["issuer"]
        self._keys: dict[str, tuple[str, ECKey | RSAKey]] = {}  # kid -> (alg, key)
        for item in auth["jwks"].get("keys", ()):
            key = public_key(item)
            if key is not None:
                self._keys[str(item["kid"])] = key
        self._cache: dict[bytes, Caller | str] = {}

    def verify(self, token: bytes) -> Caller | str:
        """The caller ``token`` stands for, or why it is refused (time not checked)."""
        outcome = self._cache.get(token)
        if outcome is None:
            outcome = self._verify(token)
            cache = self._cache
            if len(cache) >= CACHE_SIZE:
                cache.clear()
            cache[token] = outcome
        return outcome

    def _verify(self, token: bytes) -> Caller | str:
        try:
            header = jws.extract_compact(token).headers()
        except (JoseError, ValueError, TypeError):
            return MALFORMED
        found = self._keys.get(str(header.get("kid")))
        if found is None:
            return UNKNOWN_KID
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            return f"algorithm {str(alg)[:16]!r} not allowed"
        if header.get("typ") not in ("at+jwt", "application/at+jwt"):
            return "not an access token (typ)"
        key_alg, key = found
        if key_alg != alg:
            return f"algorithm {alg} does not match the key"
        try:
            claims = jwt.decode(token, key, algorithms=[alg]).claims
        except (JoseError, ValueError, TypeError):
            return "bad signature"
        if claims.get("iss") != self._issuer:
            return "wrong issuer"
        return _caller(token, claims)

    def check(self, caller: Caller, app: str, wall: float, revoked: set[str]) -> str | None:
        """Why a verified token may not be used now for ``app``; None when it may."""
        if caller.expires_at <= wall:
            return "expired token"
        if caller.nbf > wall + LEEWAY:
            return "token not valid yet"
        audience = caller.audience
        if audience is not None and GATEWAY_AUDIENCE not in audience and app not in audience:
            return "token not for this app (aud)"
        if caller.jti in revoked:
            return "revoked token"
        return None


def public_key(item: Any) -> tuple[str, ECKey | RSAKey] | None:
    """(alg, key) of a JWKS entry the gateway may verify with, or None."""
    if not isinstance(item, dict) or not isinstance(item.get("kid"), str):
        return None
    kty = item.get("kty")
    alg = item.get("alg")
    try:
        if kty == "EC" and item.get("crv") == "P-256" and alg in (None, "ES256"):
            return "ES256", ECKey.import_key(_public_only(item))
        if kty == "RSA" and alg in (None, "RS256"):
            return "RS256", RSAKey.import_key(_public_only(item))
    except (JoseError, ValueError, TypeError):
        return None
    return None  # "oct" keys never: a shared secret would let anyone holding it sign


_PRIVATE = frozenset(("d", "p", "q", "dp", "dq", "qi", "oth"))


def _public_only(item: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in item.items() if name not in _PRIVATE}


def _caller(token: bytes, claims: dict[str, Any]) -> Caller | str:
    exp, iat, nbf = claims.get("exp"), claims.get("iat"), claims.get("nbf", claims.get("iat"))
    if not (is_number(exp) and is_number(iat) and is_number(nbf)):
        return "missing or invalid exp, iat or nbf"
    sub, jti = claims.get("sub"), claims.get("jti")
    if not isinstance(sub, str) or not sub or not isinstance(jti, str) or not jti:
        return "missing sub or jti"
    aud = claims.get("aud")
    if isinstance(aud, str):
        audience = frozenset((aud,))
    elif isinstance(aud, list) and aud and all(isinstance(item, str) for item in aud):
        audience = frozenset(aud)
    else:
        return "missing or invalid aud"
    email, name = claims.get("email", ""), claims.get("name", "")
    groups, roles = claims.get("groups", []), claims.get("roles", [])
    if not isinstance(email, str) or not isinstance(name, str):
        return "invalid email or name"
    if not is_strings(groups) or not is_strings(roles):
        return "invalid groups or roles"
    identity = IdentityClaims(sub=sub, email=email, name=name, groups=groups, roles=roles)
    # An issued-in-the-future token counts as not valid yet, like nbf.
    not_before = max(float(nbf), float(iat))
    return Caller(
        credential_key(token),
        "jwt",
        identity,
        {},
        float(exp),
        audience=audience,
        jti=jti,
        nbf=not_before,
    )


def is_number(value: object) -> TypeGuard[float]:
    """True for an int or float claim (JSON numbers; never a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_strings(value: object) -> bool:
    """True for a list of strings (``groups``, ``roles``)."""
    return isinstance(value, list) and all(isinstance(item, str) for item in value)
