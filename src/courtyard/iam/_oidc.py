"""The OpenID Connect provider: the I/O shell around ``_oidc_grants``' decisions, joining the
store, the key ring, the people directory (``UserSource``) and the audit trail.

It speaks in data (mappings in, dicts or outcomes out); ``_oidc_routes`` is the HTTP face.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from courtyard.contracts import GATEWAY_AUDIENCE, GatewayAuth
from courtyard.iam._keyring import KeyInfo
from courtyard.iam._oidc_base import (
    AuditRecorder,
    Caller,
    LogoutOutcome,
    OidcPrincipal,
    UserSource,
)
from courtyard.iam._oidc_errors import OAuthError
from courtyard.iam._oidc_grants import (
    AuthorizeRequest,
    ErrorPage,
    Redirect,
    check_authorize,
    check_registration,
    redirect_with,
)
from courtyard.iam._oidc_models import (
    ClientInfo,
    ClientRecord,
    CodeRecord,
    IdTokenAlg,
    secret_hash,
)
from courtyard.iam._oidc_tokens import TokenEndpoints

__all__ = [
    "AuditRecorder",
    "Caller",
    "LogoutOutcome",
    "OidcPrincipal",
    "OidcProvider",
    "UserSource",
]


class OidcProvider(TokenEndpoints):
    """An OpenID Connect provider (OIDC Core 1.0, OAuth 2.0 with PKCE, RFC 9700 rules).

    Choices: ID tokens are signed with the client's ``id_token_alg``, ES256 unless the client
    registered RS256 (both are in discovery); refresh tokens go to every client registered
    for the refresh_token grant (first-party clients registered by admins: no consent screen).
    """

    async def load(self) -> None:
        """Read the revoked access tokens, for :meth:`revoked_jti` (call once at start)."""
        for jti, exp in await asyncio.to_thread(self._store.revoked_jtis, self._clock.time()):
            self._revoked[jti] = exp

    def discovery(self) -> dict[str, Any]:
        """The provider metadata served at ``/.well-known/openid-configuration``."""
        return dict(self._discovery)

    def jwks(self) -> dict[str, Any]:
        """The public signing keys served at ``/oauth2/jwks``."""
        return self._keys.jwks()

    # -- clients -----------------------------------------------------------------------------

    async def register_client(
        self,
        caller: Caller | None,
        app: str,
        *,
        name: str,
        public: bool,
        redirect_uris: Sequence[str],
        post_logout_redirect_uris: Sequence[str] = (),
        grant_types: Sequence[str] = ("authorization_code", "refresh_token"),
        scopes: Sequence[str] = ("openid", "profile", "email"),
        audience: Sequence[str] = (GATEWAY_AUDIENCE,),
        id_token_alg: str = "ES256",  # noqa: S107 - an algorithm name, not a secret
    ) -> tuple[ClientInfo, str | None]:
        """Register a client; returns it and its secret (None for public clients), shown once."""
        check_registration(
            app=app,
            name=name,
            public=public,
            redirect_uris=redirect_uris,
            post_logout_redirect_uris=post_logout_redirect_uris,
            grant_types=grant_types,
            scopes=scopes,
            audience=audience,
            id_token_alg=id_token_alg,
        )
        info = ClientInfo(
            client_id=f"cl_{secrets.token_hex(10)}",
            app=app,
            name=name,
            public=public,
            redirect_uris=tuple(dict.fromkeys(redirect_uris)),
            post_logout_redirect_uris=tuple(dict.fromkeys(post_logout_redirect_uris)),
            grant_types=tuple(dict.fromkeys(grant_types)),  # type: ignore[arg-type]
            scopes=tuple(dict.fromkeys(scopes)),
            audience=tuple(dict.fromkeys(audience)),
            id_token_alg=_alg(id_token_alg),
            created_at=self._clock.time(),
        )
        secret = None if public else _new_secret()
        record = ClientRecord(info, secret_hash(secret) if secret else None)
        await asyncio.to_thread(self._store.add_client, record)
        self._clients[info.client_id] = record
        await self._record(
            caller,
            "oidc.client.create",
            f"oauth-client:{info.client_id}",
            details={"app": app, "name": name, "public": public},
        )
        return info, secret

    async def list_clients(self) -> list[ClientInfo]:
        """Every registered client, oldest first."""
        return [record.info for record in await asyncio.to_thread(self._store.list_clients)]

    async def get_client(self, client_id: str) -> ClientInfo:
        """The client ``client_id``; raises ClientNotFound."""
        return (await self._client(client_id)).info

    async def delete_client(self, caller: Caller | None, client_id: str) -> None:
        """Remove the client and revoke every token family it holds; raises ClientNotFound."""
        revoked = await asyncio.to_thread(self._store.delete_client, client_id, self._clock.time())
        self._clients.pop(client_id, None)
        self._revoked_now(revoked)
        await self._record(caller, "oidc.client.delete", f"oauth-client:{client_id}")

    async def rotate_secret(self, caller: Caller | None, client_id: str) -> tuple[ClientInfo, str]:
        """A new secret for a confidential client (the old one stops working), shown once."""
        record = await self._client(client_id)
        if record.info.public:
            raise OAuthError("invalid_client", "a public client has no secret")
        secret = _new_secret()
        record = await asyncio.to_thread(
            self._store.set_client_secret, client_id, secret_hash(secret)
        )
        self._clients[client_id] = record
        await self._record(caller, "oidc.client.secret", f"oauth-client:{client_id}")
        return record.info, secret

    # -- keys --------------------------------------------------------------------------------

    async def rotate_keys(self, caller: Caller | None) -> KeyInfo:
        """Publish a new key generation; it signs after the propagation delay."""
        info = await self._keys.rotate()
        await self._record(
            caller,
            "keys.rotate",
            f"signing-key:{info.id}",
            # A string: the trail records no fractional numbers, and the setting is a float.
            details={"propagation_delay": f"{self._keys.propagation_delay:g}s"},
        )
        return info

    def list_keys(self) -> list[KeyInfo]:
        """Every key generation, oldest first."""
        return self._keys.list()

    async def advance_keys(self) -> bool:
        """Promote a propagated key and drop expired ones (call periodically); True if changed."""
        before = {info.id: info.state for info in self._keys.list()}
        if not await self._keys.advance():
            return False
        for info in self._keys.list():
            if info.state == "active" and before.get(info.id) != "active":
                await self._record(None, "keys.activate", f"signing-key:{info.id}")
        return True

    def on_keys_changed(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` when the JWKS or the signing key changes (republish to gateways)."""
        self._keys.on_change(listener)

    def gateway_auth(
        self, issuer: str | None = None, cookie_name: str | None = None, assertion_ttl: int = 60
    ) -> GatewayAuth:
        """What gateways need: the public JWKS and the active ES256 key for assertions."""
        return GatewayAuth(
            issuer=issuer or self._config.issuer,
            login_path=self._config.login_path,
            session_cookie=cookie_name or self._config.session_cookie,
            jwks=self._keys.jwks(),
            signing_key=self._keys.signing_key("ES256"),
            assertion_ttl=min(assertion_ttl, 60),
        )

    # -- revocation feed ---------------------------------------------------------------------

    def revoked_jti(self) -> list[str]:
        """Revoked access token ids whose tokens have not expired yet (for the gateways)."""
        now = self._clock.time()
        return sorted(jti for jti, exp in self._revoked.items() if exp > now)

    def on_revoked(self, listener: Callable[[list[str]], None]) -> None:
        """Call ``listener`` with the jtis of access tokens as they are revoked."""
        self._revoked_listeners.append(listener)

    async def sweep(self) -> int:
        """Forget expired codes, refresh tokens and revocations (call periodically)."""
        now = self._clock.time()
        self._revoked = {j: e for j, e in self._revoked.items() if e > now}
        return await asyncio.to_thread(self._store.purge, now, self._config.refresh_ttl)

    # -- authorization endpoint (RFC 6749 §4.1.1, OIDC Core §3.1.2) ---------------------------

    async def authorize(
        self, params: Mapping[str, str], cookie: str | None
    ) -> ErrorPage | Redirect:
        """Answer an authorization request: a code, an error for the client, the sign-in page
        (for a browser without a session), or an error page when the client is not trusted."""
        client = await self._client_or_none(params.get("client_id", ""))
        checked = check_authorize(params, client.info if client else None, self._config.issuer)
        if not isinstance(checked, AuthorizeRequest):
            return checked
        principal = await self._users.authenticate_session(cookie) if cookie else None
        if principal is None or principal.kind != "user":
            if "none" in checked.prompt:
                return self._authorize_error(checked, "login_required", "no signed-in session")
            here = "/oauth2/authorize?" + urlencode(params)
            return Redirect(f"{self._config.login_path}?{urlencode({'next': here})}")
        code = secrets.token_urlsafe(32)
        now = self._clock.time()
        identity = principal.claims(checked.client.app)
        await asyncio.to_thread(
            self._store.add_code,
            CodeRecord(
                code_hash=secret_hash(code),
                client_id=checked.client.client_id,
                subject=identity["sub"],
                session_id=principal.session_id,
                redirect_uri=checked.redirect_uri,
                scope=checked.scope,
                nonce=checked.nonce,
                code_challenge=checked.code_challenge,
                auth_time=_auth_time(principal),
                expires_at=now + self._config.code_ttl,
            ),
        )
        return Redirect(
            redirect_with(
                checked.redirect_uri,
                {"code": code, "state": checked.state, "iss": self._config.issuer},
            )
        )

    def _authorize_error(self, request: AuthorizeRequest, error: str, description: str) -> Redirect:
        return Redirect(
            redirect_with(
                request.redirect_uri,
                {
                    "error": error,
                    "error_description": description,
                    "state": request.state,
                    "iss": self._config.issuer,
                },
            )
        )

    # -- RP-initiated logout (OIDC RP-Initiated Logout 1.0) ------------------------------------

    async def end_session(
        self, params: Mapping[str, str], cookie: str | None, *, confirmed: bool = False
    ) -> LogoutOutcome:
        """Check a logout request and end the session; ``confirmed`` when the user said yes."""
        hint = params.get("id_token_hint")
        client_id = params.get("client_id")
        hinted = False
        if hint:
            try:
                _, claims = self._keys.verify(hint)  # §2: an expired hint is still a hint
            except ValueError:
                return LogoutOutcome("error", message="id_token_hint is not a token we issued")
            aud = claims.get("aud")
            audience = aud if isinstance(aud, list) else [aud]
            if claims.get("iss") != self._config.issuer or not audience:
                return LogoutOutcome("error", message="id_token_hint is not a token we issued")
            if client_id is not None and client_id not in audience:
                return LogoutOutcome("error", message="client_id does not match id_token_hint")
            client_id = client_id or str(audience[0])
            hinted = True
        target = params.get("post_logout_redirect_uri")
        url = None
        if target:
            client = await self._client_or_none(client_id or "")
            # §3: only a URI registered for the client, compared exactly.
            if client is None or target not in client.info.post_logout_redirect_uris:
                return LogoutOutcome(
                    "error", message="post_logout_redirect_uri is not registered for the client"
                )
            url = redirect_with(target, {"state": params.get("state")})
        if cookie and not hinted and not confirmed:
            return LogoutOutcome("confirm")
        if cookie:
            await self._users.logout(cookie)
        if url is not None:
            return LogoutOutcome("redirect", url=url, clear_cookie=bool(cookie))
        return LogoutOutcome("signed_out", clear_cookie=bool(cookie))


def _new_secret() -> str:
    return secrets.token_urlsafe(32)  # 256 bits


def _alg(value: str) -> IdTokenAlg:
    return "RS256" if value == "RS256" else "ES256"


def _auth_time(principal: OidcPrincipal) -> float | None:
    value = getattr(principal, "auth_time", None)
    return float(value) if isinstance(value, int | float) else None
