"""The OpenID Connect provider's decisions as pure functions over data: discovery, client
registration rules, authorization request checks, PKCE, and the claims of every token.

Nothing here does I/O or reads a clock; ``OidcProvider`` (``_oidc.py``) is the shell around it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from courtyard.contracts import IdentityClaims
from courtyard.core import is_dns_label
from courtyard.iam._oidc_errors import ClientInvalid, OAuthError
from courtyard.iam._oidc_models import (
    GRANT_TYPES,
    ID_TOKEN_ALGS,
    SCOPES,
    ClientInfo,
    GrantType,
)

# RFC 7636 §4.1/§4.2: a verifier and an S256 challenge are 43-128 unreserved characters.
_PKCE = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
_CLAIMS = ("sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "azp", "at_hash")
USER_CLAIMS = ("email", "name", "groups", "roles")


def discovery_document(issuer: str) -> dict[str, Any]:
    """OpenID Provider Metadata (OIDC Discovery 1.0 §3, RFC 8414 §2)."""
    base = issuer.rstrip("/")
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{base}/oauth2/authorize",
        "token_endpoint": f"{base}/oauth2/token",
        "userinfo_endpoint": f"{base}/oauth2/userinfo",
        "jwks_uri": f"{base}/oauth2/jwks",
        "revocation_endpoint": f"{base}/oauth2/revoke",
        "introspection_endpoint": f"{base}/oauth2/introspect",
        "end_session_endpoint": f"{base}/oauth2/logout",
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": list(GRANT_TYPES),
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
            "none",
        ],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "introspection_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
        ],
        "id_token_signing_alg_values_supported": list(ID_TOKEN_ALGS),
        "scopes_supported": list(SCOPES),
        "subject_types_supported": ["public"],
        "claims_supported": [*_CLAIMS, *USER_CLAIMS],
        # RFC 9207: the authorization response names its issuer (mix-up defence).
        "authorization_response_iss_parameter_supported": True,
    }


# -- client registration ---------------------------------------------------------------------


def check_redirect_uri(field: str, uri: object) -> str:
    """An absolute https URI, or http on a loopback host (RFC 8252 §7.3), with no fragment
    (RFC 6749 §3.1.2); compared later by exact string match (RFC 9700 §4.1.3)."""
    if not isinstance(uri, str) or not uri or len(uri) > 2000:
        raise ClientInvalid(field, "expected an absolute URI")
    parts = urlsplit(uri)
    if parts.fragment or "#" in uri:
        raise ClientInvalid(field, f"{uri!r} must not have a fragment")
    if not parts.hostname:
        raise ClientInvalid(field, f"{uri!r} is not an absolute URI")
    if parts.scheme == "https":
        return uri
    if parts.scheme == "http" and _is_loopback(parts.hostname):
        return uri
    raise ClientInvalid(field, f"{uri!r} must use https (http only on a loopback host)")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_registration(
    *,
    app: str,
    name: str,
    public: bool,
    redirect_uris: Sequence[str],
    post_logout_redirect_uris: Sequence[str],
    grant_types: Sequence[str],
    scopes: Sequence[str],
    audience: Sequence[str],
    id_token_alg: str,
) -> None:
    """Raise :class:`ClientInvalid` for the first rule the registration breaks."""
    if not is_dns_label(app):
        raise ClientInvalid("app", f"{app!r} is not an app name")
    if not name or len(name) > 255:
        raise ClientInvalid("name", "expected 1 to 255 characters")
    for uri in redirect_uris:
        check_redirect_uri("redirectUris", uri)
    for uri in post_logout_redirect_uris:
        check_redirect_uri("postLogoutRedirectUris", uri)
    unknown = [g for g in grant_types if g not in GRANT_TYPES]
    if unknown or not grant_types:
        raise ClientInvalid("grantTypes", f"expected some of {', '.join(GRANT_TYPES)}")
    if "authorization_code" in grant_types and not redirect_uris:
        raise ClientInvalid("redirectUris", "the authorization_code grant needs one")
    if "refresh_token" in grant_types and "authorization_code" not in grant_types:
        raise ClientInvalid("grantTypes", "refresh_token needs authorization_code")
    if public and "client_credentials" in grant_types:
        # RFC 6749 §4.4: only confidential clients may use client credentials.
        raise ClientInvalid("grantTypes", "a public client cannot use client_credentials")
    bad = [s for s in scopes if s not in SCOPES]
    if bad:
        raise ClientInvalid("scopes", f"unknown scope {bad[0]!r}; expected some of {SCOPES}")
    if not audience or not all(isinstance(a, str) and a for a in audience):
        raise ClientInvalid("audience", "expected at least one audience name")
    if id_token_alg not in ID_TOKEN_ALGS:
        raise ClientInvalid("idTokenAlg", f"expected one of {', '.join(ID_TOKEN_ALGS)}")


# -- authorization endpoint ------------------------------------------------------------------


@dataclass(frozen=True)
class AuthorizeRequest:
    """A checked authorization request (RFC 6749 §4.1.1 with PKCE, OIDC Core §3.1.2.1)."""

    client: ClientInfo
    redirect_uri: str
    scope: tuple[str, ...]
    state: str | None
    nonce: str | None
    code_challenge: str
    prompt: frozenset[str]


@dataclass(frozen=True)
class ErrorPage:
    """A request we cannot trust its redirect_uri for: shown to the user, never redirected
    (RFC 6749 §4.1.2.1, RFC 9700 §4.1)."""

    message: str
    status: int = 400


@dataclass(frozen=True)
class Redirect:
    """Send the browser to ``url`` (302)."""

    url: str


def redirect_with(uri: str, params: Mapping[str, str | None]) -> str:
    """``uri`` with ``params`` added to its query, keeping the query it has (RFC 6749 §3.1.2)."""
    parts = urlsplit(uri)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query += [(k, v) for k, v in params.items() if v is not None]
    return urlunsplit(parts._replace(query=urlencode(query)))


def check_authorize(
    params: Mapping[str, str], client: ClientInfo | None, issuer: str
) -> AuthorizeRequest | ErrorPage | Redirect:
    """Check an authorization request against its client.

    Until client and redirect_uri are known good, errors are an :class:`ErrorPage`; after
    that they go back to the client as ``error`` + ``state`` (RFC 6749 §4.1.2.1).
    """
    for name, value in params.items():
        if len(value) > 4096:
            return ErrorPage(f"the {name} parameter is too long")
    if client is None:
        return ErrorPage("unknown client_id: the application is not registered")
    redirect_uri = params.get("redirect_uri", "")
    # OIDC Core §3.1.2.1 makes redirect_uri required; RFC 9700 §2.1 wants an exact match.
    if redirect_uri not in client.redirect_uris:
        return ErrorPage("redirect_uri is not registered for this application")
    state = params.get("state")

    def fail(error: str, description: str) -> Redirect:
        return Redirect(
            redirect_with(
                redirect_uri,
                {"error": error, "error_description": description, "state": state, "iss": issuer},
            )
        )

    if "request" in params or "request_uri" in params:
        return fail("request_not_supported", "request objects are not supported")
    if params.get("response_type") != "code":
        return fail("unsupported_response_type", "only response_type=code is supported")
    if "authorization_code" not in client.grant_types:
        return fail("unauthorized_client", "the client may not use the authorization code grant")
    if params.get("response_mode", "query") != "query":
        return fail("invalid_request", "only response_mode=query is supported")
    challenge = params.get("code_challenge")
    method = params.get("code_challenge_method")
    # RFC 9700 §2.1.1: PKCE for every client; only S256 (plain would leak the verifier).
    if not challenge:
        return fail("invalid_request", "code_challenge is required (PKCE, S256)")
    if method != "S256":
        return fail("invalid_request", "code_challenge_method must be S256")
    if not _PKCE.fullmatch(challenge):
        return fail("invalid_request", "code_challenge is malformed")
    scope = parse_scope(params.get("scope", ""))
    if not scope:
        return fail("invalid_scope", "scope is required")
    disallowed = [s for s in scope if s not in client.scopes]
    if disallowed:
        return fail("invalid_scope", f"scope {disallowed[0]!r} is not allowed for this client")
    prompt = frozenset(params.get("prompt", "").split())
    if "none" in prompt and len(prompt) > 1:
        return fail("invalid_request", "prompt=none cannot be combined")  # OIDC Core §3.1.2.1
    return AuthorizeRequest(
        client=client,
        redirect_uri=redirect_uri,
        scope=scope,
        state=state,
        nonce=params.get("nonce"),
        code_challenge=challenge,
        prompt=prompt,
    )


def parse_scope(value: str) -> tuple[str, ...]:
    """Scope tokens in order, without duplicates (RFC 6749 §3.3)."""
    return tuple(dict.fromkeys(value.split()))


# -- token endpoint --------------------------------------------------------------------------


def pkce_matches(verifier: str, challenge: str) -> bool:
    """RFC 7636 §4.6: BASE64URL(SHA256(verifier)) == challenge, compared in constant time."""
    if not _PKCE.fullmatch(verifier):
        return False
    computed = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest())
    return hmac.compare_digest(computed.rstrip(b"=").decode("ascii"), challenge)


def token_hash_claim(token: str) -> str:
    """``at_hash`` (OIDC Core §3.1.3.6): left half of SHA-256 of the token, base64url.

    SHA-256 is the hash of both ES256 and RS256.
    """
    digest = hashlib.sha256(token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode("ascii")


def narrow_scope(requested: str | None, granted: Sequence[str]) -> tuple[str, ...]:
    """The scope of a refresh (RFC 6749 §6): at most what was granted; raises invalid_scope."""
    if not requested:
        return tuple(granted)
    scope = parse_scope(requested)
    if any(s not in granted for s in scope):
        raise OAuthError("invalid_scope", "the scope exceeds what was granted")
    return scope


def client_scope(requested: str | None, client: ClientInfo) -> tuple[str, ...]:
    """Scope of a client_credentials grant: no user, so no OIDC scopes (RFC 6749 §4.4.2)."""
    allowed = [s for s in client.scopes if s not in ("openid", "offline_access")]
    if not requested:
        return tuple(allowed)
    scope = parse_scope(requested)
    if any(s not in allowed for s in scope):
        raise OAuthError("invalid_scope", "the scope is not allowed for this client")
    return scope


def access_token_claims(
    *,
    issuer: str,
    client: ClientInfo,
    subject: str,
    scope: Sequence[str],
    jti: str,
    now: float,
    ttl: float,
    identity: IdentityClaims | None,
) -> dict[str, Any]:
    """RFC 9068 §2.2 claims; for users also email, name, groups and platform roles."""
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": subject,
        "aud": list(client.audience),
        "exp": int(now + ttl),
        "iat": int(now),
        "jti": jti,
        "client_id": client.client_id,
        "scope": " ".join(scope),
    }
    if identity is not None:
        claims.update(
            email=identity["email"],
            name=identity["name"],
            groups=list(identity["groups"]),
            roles=list(identity["roles"]),
        )
    return claims


def id_token_claims(
    *,
    issuer: str,
    client: ClientInfo,
    identity: IdentityClaims,
    scope: Sequence[str],
    now: float,
    ttl: float,
    access_token: str,
    nonce: str | None,
    auth_time: float | None,
) -> dict[str, Any]:
    """OIDC Core §2 and §3.1.3.7: the ID token for ``client`` about ``identity``."""
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": identity["sub"],
        "aud": client.client_id,
        "azp": client.client_id,
        "exp": int(now + ttl),
        "iat": int(now),
        "at_hash": token_hash_claim(access_token),
    }
    if nonce is not None:
        claims["nonce"] = nonce
    if auth_time is not None:
        claims["auth_time"] = int(auth_time)
    claims.update(scoped_claims(identity, scope))
    return claims


def scoped_claims(identity: IdentityClaims, scope: Sequence[str]) -> dict[str, Any]:
    """The user claims the granted scopes release (OIDC Core §5.4); ``sub`` always."""
    claims: dict[str, Any] = {"sub": identity["sub"]}
    if "profile" in scope:
        claims["name"] = identity["name"]
    if "email" in scope and identity["email"]:
        claims["email"] = identity["email"]
    if "groups" in scope:
        claims["groups"] = list(identity["groups"])
        claims["roles"] = list(identity["roles"])
    return claims


def grant_allowed(client: ClientInfo, grant: str) -> GrantType:
    """``grant`` if the client registered it; else unsupported_grant_type/unauthorized_client."""
    if grant not in GRANT_TYPES:
        raise OAuthError("unsupported_grant_type", f"grant_type {grant!r} is not supported")
    if grant not in client.grant_types:
        raise OAuthError("unauthorized_client", f"the client may not use {grant}")
    return grant
