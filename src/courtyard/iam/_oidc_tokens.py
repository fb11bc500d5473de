"""The provider's token-side endpoints: token (RFC 6749 §3.2 with PKCE and rotation),
userinfo (OIDC Core §5.3), revocation (RFC 7009) and introspection (RFC 7662)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from courtyard.contracts import IdentityClaims
from courtyard.iam._errors import IamError
from courtyard.iam._oidc_base import ProviderCore
from courtyard.iam._oidc_errors import OAuthError
from courtyard.iam._oidc_grants import (
    access_token_claims,
    client_scope,
    grant_allowed,
    id_token_claims,
    narrow_scope,
    pkce_matches,
    scoped_claims,
)
from courtyard.iam._oidc_models import (
    ClientInfo,
    CodeRecord,
    FamilyRecord,
    OidcConfig,
    RefreshRecord,
    secret_hash,
)
from courtyard.iam._oidc_store import Jti


class TokenEndpoints(ProviderCore):
    """Grants, bearer token checks, revocation and introspection."""

    async def token(self, form: Mapping[str, str], authorization: str | None) -> dict[str, Any]:
        """A token response (RFC 6749 §5.1); raises :class:`OAuthError` (§5.2)."""
        client = await self.authenticate_client(form, authorization, allow_public=True)
        grant = grant_allowed(client, form.get("grant_type", ""))
        if grant == "authorization_code":
            return await self._code_grant(client, form)
        if grant == "refresh_token":
            return await self._refresh_grant(client, form)
        return await self._client_credentials_grant(client, form)

    async def authenticate_client(
        self, form: Mapping[str, str], authorization: str | None, *, allow_public: bool
    ) -> ClientInfo:
        """The client a token-endpoint request comes from (RFC 6749 §2.3.1); public clients
        (auth method ``none``) only where ``allow_public``. Raises invalid_client/request."""
        basic = authorization is not None and authorization[:6].lower() == "basic "
        secret: str | None
        if basic:
            assert authorization is not None
            if "client_secret" in form:
                # RFC 6749 §2.3: a client uses one authentication method per request.
                raise OAuthError("invalid_request", "use one client authentication method")
            client_id, secret = _basic_credentials(authorization[6:])
            if form.get("client_id", client_id) != client_id:
                raise OAuthError("invalid_request", "client_id does not match the credentials")
        else:
            client_id = form.get("client_id", "")
            secret = form.get("client_secret")
        record = await self._client_or_none(client_id)
        if record is None:
            raise OAuthError("invalid_client", "client authentication failed", basic=basic)
        if record.info.public:
            if secret is not None or not allow_public:
                raise OAuthError("invalid_client", "client authentication failed", basic=basic)
            return record.info
        presented = secret_hash(secret) if secret is not None else ""
        if record.secret_hash is None or not hmac.compare_digest(presented, record.secret_hash):
            raise OAuthError("invalid_client", "client authentication failed", basic=basic)
        return record.info

    async def _code_grant(self, client: ClientInfo, form: Mapping[str, str]) -> dict[str, Any]:
        code = form.get("code", "")
        verifier = form.get("code_verifier")
        if not code:
            raise OAuthError("invalid_request", "code is required")
        if not verifier:
            raise OAuthError("invalid_request", "code_verifier is required (PKCE)")
        code_hash = secret_hash(code)
        record = await asyncio.to_thread(self._store.get_code, code_hash)
        now = self._clock.time()
        if record is None:
            raise OAuthError("invalid_grant", "the code is not valid")
        if record.used_at is not None:
            await self._code_reused(client, record)
        if record.client_id != client.client_id:
            raise OAuthError("invalid_grant", "the code was issued to another client")
        if record.expires_at <= now:
            raise OAuthError("invalid_grant", "the code has expired")
        # RFC 6749 §4.1.3: redirect_uri must be identical to the one authorized.
        if form.get("redirect_uri") != record.redirect_uri:
            raise OAuthError("invalid_grant", "redirect_uri does not match")
        if not pkce_matches(verifier, record.code_challenge):
            raise OAuthError("invalid_grant", "code_verifier does not match (PKCE)")
        identity = await self._identity(record.subject, client)
        family_id = secrets.token_hex(16)
        issued = self._issue(
            client,
            record.subject,
            record.scope,
            identity,
            nonce=record.nonce,
            now=now,
            auth_time=record.auth_time,
        )
        refresh, refresh_record = self._new_refresh(client, family_id, record, now)
        family = FamilyRecord(
            id=family_id,
            client_id=client.client_id,
            subject=record.subject,
            created_at=now,
            access_jtis=(issued.jti,),
        )
        redeemed = await asyncio.to_thread(
            self._store.redeem_code, code_hash, now, family, refresh_record
        )
        if not redeemed:  # lost a race with another redemption: that one was a replay
            latest = await asyncio.to_thread(self._store.get_code, code_hash)
            await self._code_reused(client, latest or record)
        await self._record_issue(client, "authorization_code", record.subject, record.scope)
        return issued.response(refresh)

    async def _code_reused(self, client: ClientInfo, record: CodeRecord) -> None:
        """RFC 6749 §4.1.2: deny a reused code and revoke the tokens issued from it."""
        if record.family_id is not None:
            revoked = await asyncio.to_thread(
                self._store.revoke_family, record.family_id, self._clock.time()
            )
            self._revoked_now(revoked)
        await self._record_reuse(client, record.subject, "authorization code reused")
        raise OAuthError("invalid_grant", "the code was already used")

    async def _refresh_grant(self, client: ClientInfo, form: Mapping[str, str]) -> dict[str, Any]:
        presented = form.get("refresh_token", "")
        if not presented:
            raise OAuthError("invalid_request", "refresh_token is required")
        token_hash = secret_hash(presented)
        record = await asyncio.to_thread(self._store.get_refresh, token_hash)
        now = self._clock.time()
        if record is None or record.client_id != client.client_id:
            raise OAuthError("invalid_grant", "the refresh token is not valid")
        if record.used_at is not None:
            await self._refresh_reused(client, record)
        if record.revoked_at is not None or record.expires_at <= now:
            raise OAuthError("invalid_grant", "the refresh token is revoked or expired")
        scope = narrow_scope(form.get("scope"), record.scope)
        identity = await self._identity(record.subject, client)
        issued = self._issue(client, record.subject, scope, identity, nonce=None, now=now)
        refresh = secrets.token_urlsafe(32)
        # RFC 6749 §6: the new refresh token keeps the scope of the one it replaces.
        successor = RefreshRecord(
            token_hash=secret_hash(refresh),
            family_id=record.family_id,
            client_id=client.client_id,
            subject=record.subject,
            scope=record.scope,
            created_at=now,
            expires_at=now + self._config.refresh_ttl,
        )
        rotated = await asyncio.to_thread(
            self._store.rotate_refresh, token_hash, now, successor, issued.jti
        )
        if not rotated:
            latest = await asyncio.to_thread(self._store.get_refresh, token_hash)
            if latest is not None and latest.used_at is not None and latest.revoked_at is None:
                await self._refresh_reused(client, latest)
            raise OAuthError("invalid_grant", "the refresh token is revoked or expired")
        await self._record_issue(client, "refresh_token", record.subject, scope)
        return issued.response(refresh)

    async def _refresh_reused(self, client: ClientInfo, record: RefreshRecord) -> None:
        """RFC 9700 §4.14.2: a rotated-out refresh token came back; revoke the whole family."""
        revoked = await asyncio.to_thread(
            self._store.revoke_family, record.family_id, self._clock.time()
        )
        self._revoked_now(revoked)
        await self._record_reuse(client, record.subject, "refresh token reused")
        raise OAuthError("invalid_grant", "the refresh token was already used")

    async def _client_credentials_grant(
        self, client: ClientInfo, form: Mapping[str, str]
    ) -> dict[str, Any]:
        if client.public:  # RFC 6749 §4.4: confidential clients only
            raise OAuthError("unauthorized_client", "public clients cannot use this grant")
        scope = client_scope(form.get("scope"), client)
        subject = f"svc:{client.client_id}"
        issued = self._issue(client, subject, scope, None, nonce=None, now=self._clock.time())
        await self._record_issue(client, "client_credentials", subject, scope)
        return issued.response(None)

    async def _identity(self, subject: str, client: ClientInfo) -> IdentityClaims:
        try:
            principal = await self._users.principal_of(subject)
        except IamError:
            raise OAuthError("invalid_grant", "the user no longer exists") from None
        return principal.claims(client.app)

    def _issue(
        self,
        client: ClientInfo,
        subject: str,
        scope: Sequence[str],
        identity: IdentityClaims | None,
        *,
        nonce: str | None,
        now: float,
        auth_time: float | None = None,
    ) -> _Issued:
        config = self._config
        jti = secrets.token_hex(16)
        claims = access_token_claims(
            issuer=config.issuer,
            client=client,
            subject=subject,
            scope=scope,
            jti=jti,
            now=now,
            ttl=config.access_token_ttl,
            identity=identity,
        )
        # RFC 9068 §2.1: access tokens carry typ "at+jwt" so they cannot pass for ID tokens.
        access = self._keys.sign(claims, alg="ES256", typ="at+jwt")
        id_token = None
        if identity is not None and "openid" in scope:
            id_claims = id_token_claims(
                issuer=config.issuer,
                client=client,
                identity=identity,
                scope=scope,
                now=now,
                ttl=config.id_token_ttl,
                access_token=access,
                nonce=nonce,
                auth_time=auth_time,
            )
            id_token = self._keys.sign(id_claims, alg=client.id_token_alg)
        return _Issued(access, (jti, float(claims["exp"])), id_token, scope, config)

    def _new_refresh(
        self, client: ClientInfo, family_id: str, code: CodeRecord, now: float
    ) -> tuple[str | None, RefreshRecord | None]:
        if "refresh_token" not in client.grant_types:
            return None, None
        token = secrets.token_urlsafe(32)
        return token, RefreshRecord(
            token_hash=secret_hash(token),
            family_id=family_id,
            client_id=client.client_id,
            subject=code.subject,
            scope=code.scope,
            created_at=now,
            expires_at=now + self._config.refresh_ttl,
        )

    # -- bearer tokens: userinfo, revocation, introspection ------------------------------------

    async def access_claims(self, token: str) -> dict[str, Any] | None:
        """The claims of a live access token we issued (signature, typ, iss, exp, not
        revoked), or None."""
        try:
            header, claims = self._keys.verify(token)
        except ValueError:
            return None
        now = self._clock.time()
        exp = claims.get("exp")
        if (
            header.get("typ") != "at+jwt"
            or claims.get("iss") != self._config.issuer
            or not isinstance(exp, int | float)
            or exp <= now
            or not isinstance(claims.get("jti"), str)
        ):
            return None
        jti = claims["jti"]
        if jti in self._revoked or await asyncio.to_thread(self._store.is_revoked, jti):
            return None
        return claims

    async def userinfo(self, token: str) -> dict[str, Any]:
        """OIDC Core §5.3: the signed-in user's claims by scope; raises invalid_token."""
        claims = await self.access_claims(token)
        if claims is None:
            raise OAuthError("invalid_token", "the access token is not valid")
        scope = str(claims.get("scope", "")).split()
        if "openid" not in scope or str(claims["sub"]).startswith("svc:"):
            raise OAuthError("insufficient_scope", "the token lacks the openid scope")
        client = await self._client_or_none(str(claims.get("client_id", "")))
        try:
            principal = await self._users.principal_of(str(claims["sub"]))
        except IamError:
            raise OAuthError("invalid_token", "the user no longer exists") from None
        identity = principal.claims(client.info.app if client else None)
        return scoped_claims(identity, scope)

    async def revoke(self, form: Mapping[str, str], authorization: str | None) -> None:
        """RFC 7009 §2: revoke a refresh token (its whole family) or an access token.

        Unknown tokens and tokens of other clients are ignored (the answer is 200 either way).
        """
        client = await self.authenticate_client(form, authorization, allow_public=True)
        token = form.get("token", "")
        if not token:
            raise OAuthError("invalid_request", "token is required")
        now = self._clock.time()
        record = await asyncio.to_thread(self._store.get_refresh, secret_hash(token))
        if record is not None:
            if record.client_id == client.client_id:
                revoked = await asyncio.to_thread(self._store.revoke_family, record.family_id, now)
                self._revoked_now(revoked)
                await self._record_revoke(client, record.subject, "refresh")
            return
        claims = await self.access_claims(token)
        if claims is None or claims.get("client_id") != client.client_id:
            return
        item = (str(claims["jti"]), float(claims["exp"]))
        await asyncio.to_thread(self._store.revoke_jtis, [item])
        self._revoked_now([item])
        await self._record_revoke(client, str(claims["sub"]), "access")

    async def introspect(
        self, form: Mapping[str, str], authorization: str | None
    ) -> dict[str, Any]:
        """RFC 7662 §2.2: whether a token is active, and its claims; confidential clients only.

        Any confidential client may introspect any access token (resource servers are
        clients too); refresh tokens only by the client that holds them (RFC 7662 §4).
        """
        client = await self.authenticate_client(form, authorization, allow_public=False)
        token = form.get("token", "")
        if not token:
            raise OAuthError("invalid_request", "token is required")
        claims = await self.access_claims(token)
        if claims is not None:
            keep = ("scope", "client_id", "sub", "exp", "iat", "iss", "aud", "jti")
            answer = {"active": True, "token_type": "Bearer"}
            answer.update({k: claims[k] for k in keep if k in claims})
            return answer
        record = await asyncio.to_thread(self._store.get_refresh, secret_hash(token))
        now = self._clock.time()
        if (
            record is None
            or record.client_id != client.client_id
            or record.used_at is not None
            or record.revoked_at is not None
            or record.expires_at <= now
        ):
            return {"active": False}
        return {
            "active": True,
            "token_type": "refresh_token",
            "scope": " ".join(record.scope),
            "client_id": record.client_id,
            "sub": record.subject,
            "exp": int(record.expires_at),
            "iat": int(record.created_at),
            "iss": self._config.issuer,
        }


@dataclass(frozen=True)
class _Issued:
    access_token: str
    jti: Jti
    id_token: str | None
    scope: Sequence[str]
    config: OidcConfig

    def response(self, refresh_token: str | None) -> dict[str, Any]:
        """RFC 6749 §5.1 (+ OIDC Core §3.1.3.3 ``id_token``)."""
        body: dict[str, Any] = {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": int(self.config.access_token_ttl),
            "scope": " ".join(self.scope),
        }
        if refresh_token is not None:
            body["refresh_token"] = refresh_token
        if self.id_token is not None:
            body["id_token"] = self.id_token
        return body


def _basic_credentials(encoded: str) -> tuple[str, str]:
    """RFC 6749 §2.3.1: Basic credentials are form-urlencoded before base64."""
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise OAuthError("invalid_client", "malformed Basic credentials", basic=True) from None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise OAuthError("invalid_client", "malformed Basic credentials", basic=True)
    return unquote_plus(client_id), unquote_plus(secret)
