"""API tokens (personal access tokens for people, API keys for service accounts) and the
gateway's full credential table (OWASP ASVS V3.5: shown once, stored hashed, scoped, expiring).
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable

from courtyard.contracts import GatewayCredential
from courtyard.iam._base import IamBase
from courtyard.iam._errors import InvalidInput, MalformedApiToken, TokenNotFound
from courtyard.iam._models import Principal, TokenInfo, TokenRecord
from courtyard.iam._sessions import TOUCH_INTERVAL, secret_key, token_credential
from courtyard.iam._tokens import new_api_token, parse_api_token, verify_api_token

_SCOPE = re.compile(r"[a-z][a-z0-9:._-]{0,63}")


class TokenOps(IamBase):
    """Tokens and the gateway feed (part of :class:`courtyard.iam.Iam`)."""

    # -- API tokens (OWASP ASVS V3.5) ----------------------------------------------------------

    async def _owner(self, owner_ref: str) -> str:
        if owner_ref.startswith(("svc:", "service:")):
            name = owner_ref.partition(":")[2]
            await self._run(self._store.get_service, name)
            return f"service:{name}"
        return f"user:{(await self._user(owner_ref.removeprefix('user:'))).id}"

    async def issue_token(
        self,
        caller: Principal | None,
        owner_ref: str,
        name: str,
        *,
        scopes: Iterable[str] = (),
        expires_in: float | None = 90 * 86400,
    ) -> tuple[str, TokenInfo]:
        """A new PAT (user) or API key (``svc:<name>``): ``(token, info)``; show it once."""
        scopes = tuple(sorted(set(scopes)))
        for scope in scopes:
            if _SCOPE.fullmatch(scope) is None:
                raise InvalidInput("scopes", f"{scope[:64]!r} is not lower-case a-z, 0-9, ':._-'")
        if expires_in is not None and expires_in <= 0:
            raise InvalidInput("expiresIn", "must be positive seconds, or null for no expiry")
        name = name.strip()[:255]
        if not name:
            raise InvalidInput("name", "a token needs a name")
        owner = await self._owner(owner_ref)
        issued = new_api_token()
        now = self._clock.time()
        record = TokenRecord(
            id=issued.token_id,
            owner=owner,
            name=name,
            secret_hash=issued.secret_hash,
            lookup_hash=issued.lookup_hash,
            scopes=scopes,
            created_at=now,
            expires_at=now + expires_in if expires_in is not None else None,
        )
        await self._run(self._store.add_token, record)
        await self._record(
            caller,
            "auth.token.issue",
            f"token:{record.id}",
            details={"owner": owner, "name": name, "scopes": list(scopes)},
        )
        principal = await self._token_principal(record)
        if principal is not None:
            self._notify([token_credential(principal, record)], [])
        return issued.token, record.info()

    async def list_tokens(self, owner_ref: str) -> list[TokenInfo]:
        """The owner's tokens, revoked and expired ones included, oldest first."""
        owner = await self._owner(owner_ref)
        return [t.info() for t in await self._run(self._store.list_tokens, owner)]

    async def get_token(self, token_id: str) -> TokenInfo:
        """One token's listing; raises TokenNotFound."""
        return (await self._run(self._store.get_token, token_id)).info()

    async def revoke_token(self, caller: Principal | None, token_id: str) -> None:
        """Revoke a token now (idempotent)."""
        before = await self._run(self._store.get_token, token_id)
        record = await self._run(self._store.revoke_token, token_id, self._clock.time())
        if before.revoked_at is None:
            await self._record(
                caller, "auth.token.revoke", f"token:{token_id}", details={"owner": record.owner}
            )
        self._notify([], [record.lookup_hash])

    async def authenticate_token(self, presented: str) -> Principal | None:
        """The owner of ``presented`` (scoped as the token is), or None."""
        try:
            token_id, secret = parse_api_token(presented)
        except MalformedApiToken:
            return None
        try:
            record = await self._run(self._store.get_token, token_id)
        except TokenNotFound:
            return None
        whole = hmac.compare_digest(record.lookup_hash, secret_key(presented.strip()))
        now = self._clock.time()
        if not (verify_api_token(record.secret_hash, secret) and whole and record.is_live(now)):
            return None
        principal = await self._token_principal(record)
        if principal is not None and (
            record.last_used_at is None or now - record.last_used_at >= TOUCH_INTERVAL
        ):
            await self._run(self._store.touch_tokens, {record.id: now})
        return principal

    # -- gateway feed -------------------------------------------------------------------------

    async def gateway_credentials(self) -> list[GatewayCredential]:
        """Every live session and token, as the gateway's credential table."""
        return await self._run(self._credentials_of, None)
