"""Workload identities: the short-lived JWT each app instance presents to the mesh listener.

A credential is an ES256 JWT (RFC 7519) signed with the platform's current key, ``sub`` the
app's SPIFFE ID, ``aud`` the mesh. The gateway workers never verify it: they look up
SHA-256(token) in the credential table the node pushes to them, so revoking a credential (its
instance stopped) takes effect at once, and an expired one leaves the table at the next sweep.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from joserfc import jwt
from joserfc.jwk import ECKey

from courtyard.contracts import (
    DEFAULT_TRUST_DOMAIN,
    MESH_AUDIENCE,
    GatewayCredential,
    IdentityClaims,
    spiffe_id,
)
from courtyard.core import Clock, SystemClock, is_dns_label
from courtyard.runtime import IssuedCredential

log = logging.getLogger("courtyard.mesh")

MAX_LIFETIME = 900.0  # seconds: issue 5 caps workload credentials at 15 minutes
REFRESH_AT = 2 / 3  # share of its lifetime after which a held credential is renewed

CredentialListener = Callable[[list[GatewayCredential], list[str]], None]


class SigningKeys(Protocol):
    """What issuing needs of the key ring (courtyard.iam.KeyRing)."""

    def signing_key(self, alg: Literal["ES256"]) -> dict[str, Any]:
        """The active private JWK for ``alg``, with its ``kid``."""
        ...


@dataclass(frozen=True)
class WorkloadConfig:
    """How workload credentials look: issuer, trust domain and lifetime (at most 900 s)."""

    issuer: str  # the platform's URL: `iss`
    trust_domain: str = DEFAULT_TRUST_DOMAIN
    lifetime: float = 600.0

    def __post_init__(self) -> None:
        if not 1 <= self.lifetime <= MAX_LIFETIME:
            raise ValueError(
                f"a workload credential lives at least 1 and at most {MAX_LIFETIME:g} s, "
                f"not {self.lifetime:g}"
            )
        if not self.trust_domain or any(c in self.trust_domain for c in "/:@ "):
            raise ValueError(f"not a SPIFFE trust domain: {self.trust_domain!r}")


def credential_key(token: str) -> str:
    """The key the gateway's table holds for ``token``: SHA-256, hex (never the token)."""
    return hashlib.sha256(token.encode()).hexdigest()


class WorkloadIdentities:
    """Issues, tracks and revokes the workload credentials of every app instance.

    Implements :class:`courtyard.runtime.CredentialIssuer`. Every change goes to ``listener``
    as ``(upserts, revoked keys)`` (the node's IdentityFeed.credentials_changed); ``applied``,
    when given, is awaited after each change and returns once the gateway workers enforce it.
    """

    def __init__(
        self,
        keys: SigningKeys,
        config: WorkloadConfig,
        *,
        clock: Clock | None = None,
        listener: CredentialListener | None = None,
        applied: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._keys = keys
        self._config = config
        self._clock = clock or SystemClock()
        self._listener = listener
        self._applied = applied
        # app -> instance -> key -> credential; an instance holds two keys while they overlap.
        self._live: dict[str, dict[str, dict[str, GatewayCredential]]] = {}
        self._signer: tuple[str, ECKey] | None = None

    @property
    def config(self) -> WorkloadConfig:
        return self._config

    async def issue(self, app: str, instance: str) -> IssuedCredential:
        """A new credential for ``instance`` of ``app`` (ValueError for a bad app name).

        The instance's earlier credentials stay valid until they expire, so a process that
        has not yet reread its file keeps working.
        """
        if not is_dns_label(app):
            raise ValueError(f"not an app name (RFC 1123 label): {app!r}")
        if not instance:
            raise ValueError("an instance id is required")
        now = int(self._clock.time())
        expires = now + int(self._config.lifetime)
        subject = spiffe_id(self._config.trust_domain, app)
        claims = {
            "iss": self._config.issuer,
            "sub": subject,
            "aud": MESH_AUDIENCE,
            "iat": now,
            "exp": expires,
            "jti": secrets.token_urlsafe(16),
        }
        kid, key = self._current_signer()
        header = {"alg": "ES256", "typ": "JWT", "kid": kid}
        token = jwt.encode(header, claims, key, algorithms=["ES256"])
        credential = GatewayCredential(
            key=credential_key(token),
            kind="workload",
            identity=IdentityClaims(sub=subject, email="", name=app, groups=[], roles=[]),
            app_roles={},
            expires_at=float(expires),
            app=app,
        )
        expired = self._drop_expired()
        self._live.setdefault(app, {}).setdefault(instance, {})[credential["key"]] = credential
        await self._changed([credential], expired)
        return IssuedCredential(token=token, expires_at=float(expires))

    async def release(self, app: str, instance: str) -> None:
        """Revoke every credential of ``instance`` of ``app`` at once."""
        instances = self._live.get(app, {})
        keys = list(instances.pop(instance, {}))
        if not instances:
            self._live.pop(app, None)
        await self._changed([], keys)

    async def release_app(self, app: str) -> None:
        """Revoke every credential of every instance of ``app`` (stopped or removed)."""
        instances = self._live.pop(app, {})
        await self._changed([], [key for held in instances.values() for key in held])

    def credentials(self) -> list[GatewayCredential]:
        """Every live workload credential (for the full table a new gateway worker gets)."""
        now = self._clock.time()
        return [
            credential
            for instances in self._live.values()
            for held in instances.values()
            for credential in held.values()
            if credential["expires_at"] > now
        ]

    def sweep(self) -> int:
        """Forget expired credentials and tell the listener; how many went."""
        expired = self._drop_expired()
        if expired and self._listener is not None:
            self._listener([], expired)
        return len(expired)

    # -- small pieces -----------------------------------------------------------------------

    def _current_signer(self) -> tuple[str, ECKey]:
        """The active ES256 key, imported once per key generation."""
        jwk = self._keys.signing_key("ES256")
        kid = str(jwk["kid"])
        if self._signer is None or self._signer[0] != kid:
            self._signer = (kid, ECKey.import_key(jwk))
        return self._signer

    def _drop_expired(self) -> list[str]:
        now = self._clock.time()
        expired: list[str] = []
        for app in list(self._live):
            instances = self._live[app]
            for instance in list(instances):
                held = instances[instance]
                for key in [k for k, c in held.items() if c["expires_at"] <= now]:
                    del held[key]
                    expired.append(key)
                if not held:
                    del instances[instance]
            if not instances:
                del self._live[app]
        return expired

    async def _changed(self, upserts: list[GatewayCredential], revoked: list[str]) -> None:
        if not upserts and not revoked:
            return
        if self._listener is not None:
            self._listener(upserts, revoked)
        if self._applied is not None:
            await self._applied()


class HeldCredential:
    """A workload credential the control plane holds for itself, in memory (the events
    delivery loop calls subscribers through the mesh as ``events_app``).

    :meth:`start` issues the first one, :meth:`run` renews it at 2/3 of each lifetime until
    cancelled, :meth:`aclose` revokes it; :meth:`current` is the token to send now.
    """

    def __init__(
        self,
        identities: WorkloadIdentities,
        app: str,
        instance: str,
        *,
        clock: Clock | None = None,
        retry_delay: float = 5.0,
    ) -> None:
        self._identities = identities
        self._app = app
        self._instance = instance
        self._clock = clock or SystemClock()
        self._retry_delay = retry_delay
        self._issued: IssuedCredential | None = None
        self._issued_at = 0.0

    def current(self) -> str:
        """The token to present now; RuntimeError before :meth:`start`."""
        if self._issued is None:
            raise RuntimeError("the control plane's workload credential is not issued yet")
        return self._issued.token

    async def start(self) -> None:
        """Issue the first credential."""
        await self._renew()

    async def run(self) -> None:
        """Renew the credential at 2/3 of its lifetime, forever (cancel to stop)."""
        while True:
            issued = self._issued
            if issued is None:
                due = self._clock.time()
            else:
                due = self._issued_at + (issued.expires_at - self._issued_at) * REFRESH_AT
            await self._clock.sleep(max(0.0, due - self._clock.time()))
            try:
                await self._renew()
            except Exception:
                log.exception("cannot renew the control plane's workload credential")
                await self._clock.sleep(self._retry_delay)

    async def aclose(self) -> None:
        """Revoke it."""
        try:
            await self._identities.release(self._app, self._instance)
        except Exception:
            log.exception("cannot revoke the control plane's workload credential")
        self._issued = None

    async def _renew(self) -> None:
        issued = await self._identities.issue(self._app, self._instance)
        self._issued, self._issued_at = issued, self._clock.time()
