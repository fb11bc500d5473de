"""The worker's table of server-side credentials (browser sessions, API tokens, and apps'
workload credentials for the mesh), fed by the control plane's ``credentials`` messages, so
checking a caller is a dictionary probe.

The table never holds a secret: entries are keyed by SHA-256 (hex) of the presented string.
"""

from __future__ import annotations

import hashlib
from typing import Literal

from courtyard.contracts import CredentialsMessage, GatewayCredential, IdentityClaims

CallerKind = Literal["session", "token", "workload", "jwt"]


class Caller:
    """An authenticated caller: who it is and until when the credential holds.

    Built once per credential (on upsert, or when an access token first verifies), then
    shared by every request that presents it.
    """

    __slots__ = (
        "app",
        "app_roles",
        "audience",
        "expires_at",
        "identity",
        "jti",
        "key",
        "kind",
        "nbf",
    )

    def __init__(
        self,
        key: str,
        kind: CallerKind,
        identity: IdentityClaims,
        app_roles: dict[str, list[str]],
        expires_at: float,
        *,
        audience: frozenset[str] | None = None,
        jti: str | None = None,
        nbf: float = 0.0,
        app: str | None = None,
    ) -> None:
        self.key = key
        self.kind = kind
        self.identity = identity
        self.app_roles = app_roles
        self.expires_at = expires_at
        self.audience = audience  # access tokens only: the apps the token is for
        self.jti = jti
        self.nbf = nbf  # not valid before (nbf, or iat, of an access token)
        self.app = app  # workload credentials only: the app it speaks for

    @classmethod
    def of(cls, credential: GatewayCredential) -> Caller:
        """The caller a table entry stands for."""
        return cls(
            credential["key"],
            credential["kind"],
            credential["identity"],
            credential["app_roles"],
            float(credential["expires_at"]),
            app=credential.get("app"),
        )


def credential_key(presented: bytes | str) -> str:
    """The table key of a presented secret: SHA-256 of its exact bytes, as hex."""
    data = presented.encode() if isinstance(presented, str) else presented
    return hashlib.sha256(data).hexdigest()


class CredentialTable:
    """Sessions, API tokens and workload credentials by key, and the ``jti`` of revoked
    access tokens.

    ``generation`` grows with every message applied.
    """

    __slots__ = ("callers", "generation", "revoked_jti")

    def __init__(self) -> None:
        self.callers: dict[str, Caller] = {}
        self.revoked_jti: set[str] = set()
        self.generation = 0

    def __len__(self) -> int:
        return len(self.callers)

    def apply(self, message: CredentialsMessage) -> set[str] | None:
        """Apply a full table or a change; returns the keys touched (None: every key)."""
        self.generation += 1
        callers = self.callers
        if message["full"]:
            self.callers = {item["key"]: Caller.of(item) for item in message["upsert"]}
            for key in message["revoke"]:
                self.callers.pop(key, None)
            self.revoked_jti = set(message["revoked_jti"])
            return None
        touched: set[str] = set()
        for item in message["upsert"]:
            callers[item["key"]] = Caller.of(item)
            touched.add(item["key"])
        for key in message["revoke"]:
            callers.pop(key, None)
            touched.add(key)
        self.revoked_jti.update(message["revoked_jti"])
        return touched

    def find(self, key: str, wall: float) -> Caller | str | None:
        """The live caller of ``key``; a reason when it expired; None when unknown."""
        caller = self.callers.get(key)
        if caller is None:
            return None
        if caller.expires_at <= wall:
            return f"expired {caller.kind}"
        return caller
