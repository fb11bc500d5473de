"""Where the OpenID Connect provider keeps its state: the ``OidcStore`` protocol and its
in-memory backend. Redeeming a code and rotating a refresh token are each one atomic step, so
a replay racing the legitimate request is always seen as a reuse (RFC 9700 §4.14.2).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol

from courtyard.iam._keyring import KeyGeneration, SigningKeyStore
from courtyard.iam._oidc_errors import ClientInvalid, ClientNotFound
from courtyard.iam._oidc_models import ClientRecord, CodeRecord, FamilyRecord, RefreshRecord

Jti = tuple[str, float]  # (jti, exp)


class OidcStore(SigningKeyStore, Protocol):
    """Persistence of clients, codes, token families, revoked jtis and signing keys.

    Every method is atomic and thread-safe; they are synchronous and run in worker threads.
    """

    def add_client(self, record: ClientRecord) -> None:
        """Register a client; raises ClientInvalid if the id is taken."""
        ...

    def get_client(self, client_id: str) -> ClientRecord:
        """The client; raises ClientNotFound."""
        ...

    def list_clients(self) -> list[ClientRecord]:
        """Every client, oldest first."""
        ...

    def set_client_secret(self, client_id: str, secret_hash: str) -> ClientRecord:
        """Replace the client's secret hash; raises ClientNotFound."""
        ...

    def delete_client(self, client_id: str, now: float) -> list[Jti]:
        """Delete the client and its codes, families and refresh tokens; raises ClientNotFound.

        Returns the unexpired access token jtis of its families, now in the revoked list.
        """
        ...

    def add_code(self, record: CodeRecord) -> None:
        """Store an issued authorization code."""
        ...

    def get_code(self, code_hash: str) -> CodeRecord | None:
        """The code stored under ``code_hash``, used or not."""
        ...

    def redeem_code(
        self, code_hash: str, now: float, family: FamilyRecord, refresh: RefreshRecord | None
    ) -> bool:
        """Mark the code used by ``family`` and store the family and its refresh token.

        False (writing nothing) when the code was already used.
        """
        ...

    def get_refresh(self, token_hash: str) -> RefreshRecord | None:
        """The refresh token stored under ``token_hash``."""
        ...

    def get_family(self, family_id: str) -> FamilyRecord | None:
        """The token family ``family_id``."""
        ...

    def rotate_refresh(
        self, token_hash: str, now: float, new: RefreshRecord | None, access: Jti
    ) -> bool:
        """Mark the refresh token used, store its successor and the new access token's jti.

        False (writing nothing) when it was used already or its family is revoked.
        """
        ...

    def revoke_family(self, family_id: str, now: float) -> list[Jti]:
        """Revoke the family and its refresh tokens; put its unexpired access jtis in the
        revoked list and return those newly revoked ([] when it was revoked already)."""
        ...

    def revoke_jtis(self, jtis: Sequence[Jti]) -> None:
        """Add access token jtis (with their expiry) to the revoked list."""
        ...

    def is_revoked(self, jti: str) -> bool:
        """Whether ``jti`` is in the revoked list."""
        ...

    def revoked_jtis(self, now: float) -> list[Jti]:
        """Revoked jtis whose tokens have not expired yet."""
        ...

    def purge(self, now: float, grace: float) -> int:
        """Delete expired revoked jtis and refresh tokens, codes expired ``grace`` ago and
        families left without refresh tokens; returns how many rows went."""
        ...


class MemoryOidcStore:
    """An OIDC store in dicts behind a lock: for tests and throw-away dev nodes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: dict[str, ClientRecord] = {}
        self._codes: dict[str, CodeRecord] = {}
        self._families: dict[str, FamilyRecord] = {}
        self._refresh: dict[str, RefreshRecord] = {}
        self._revoked: dict[str, float] = {}
        self._keys: dict[str, KeyGeneration] = {}

    def add_client(self, record: ClientRecord) -> None:
        with self._lock:
            if record.info.client_id in self._clients:
                raise ClientInvalid("client_id", f"{record.info.client_id!r} is taken")
            self._clients[record.info.client_id] = record

    def get_client(self, client_id: str) -> ClientRecord:
        with self._lock:
            return self._client(client_id)

    def list_clients(self) -> list[ClientRecord]:
        with self._lock:
            records = list(self._clients.values())
        return sorted(records, key=lambda r: (r.info.created_at, r.info.client_id))

    def set_client_secret(self, client_id: str, secret_hash: str) -> ClientRecord:
        with self._lock:
            record = replace(self._client(client_id), secret_hash=secret_hash)
            self._clients[client_id] = record
            return record

    def delete_client(self, client_id: str, now: float) -> list[Jti]:
        with self._lock:
            self._client(client_id)
            revoked: list[Jti] = []
            for family in [f for f in self._families.values() if f.client_id == client_id]:
                revoked += self._revoke_family(family.id, now)
                del self._families[family.id]
            self._codes = {k: v for k, v in self._codes.items() if v.client_id != client_id}
            self._refresh = {k: v for k, v in self._refresh.items() if v.client_id != client_id}
            del self._clients[client_id]
            return revoked

    def add_code(self, record: CodeRecord) -> None:
        with self._lock:
            self._codes[record.code_hash] = record

    def get_code(self, code_hash: str) -> CodeRecord | None:
        with self._lock:
            return self._codes.get(code_hash)

    def redeem_code(
        self, code_hash: str, now: float, family: FamilyRecord, refresh: RefreshRecord | None
    ) -> bool:
        with self._lock:
            code = self._codes.get(code_hash)
            if code is None or code.used_at is not None:
                return False
            self._codes[code_hash] = replace(code, used_at=now, family_id=family.id)
            self._families[family.id] = family
            if refresh is not None:
                self._refresh[refresh.token_hash] = refresh
            return True

    def get_refresh(self, token_hash: str) -> RefreshRecord | None:
        with self._lock:
            return self._refresh.get(token_hash)

    def get_family(self, family_id: str) -> FamilyRecord | None:
        with self._lock:
            return self._families.get(family_id)

    def rotate_refresh(
        self, token_hash: str, now: float, new: RefreshRecord | None, access: Jti
    ) -> bool:
        with self._lock:
            old = self._refresh.get(token_hash)
            if old is None or old.used_at is not None or old.revoked_at is not None:
                return False
            family = self._families.get(old.family_id)
            if family is None or family.revoked_at is not None:
                return False
            self._refresh[token_hash] = replace(old, used_at=now)
            if new is not None:
                self._refresh[new.token_hash] = new
            self._families[family.id] = replace(family, access_jtis=(*family.access_jtis, access))
            return True

    def revoke_family(self, family_id: str, now: float) -> list[Jti]:
        with self._lock:
            return self._revoke_family(family_id, now)

    def revoke_jtis(self, jtis: Sequence[Jti]) -> None:
        with self._lock:
            for jti, exp in jtis:
                self._revoked.setdefault(jti, exp)

    def is_revoked(self, jti: str) -> bool:
        with self._lock:
            return jti in self._revoked

    def revoked_jtis(self, now: float) -> list[Jti]:
        with self._lock:
            return sorted((j, e) for j, e in self._revoked.items() if e > now)

    def purge(self, now: float, grace: float) -> int:
        with self._lock:
            before = self._size()
            self._revoked = {j: e for j, e in self._revoked.items() if e > now}
            self._codes = {k: c for k, c in self._codes.items() if c.expires_at + grace > now}
            self._refresh = {k: r for k, r in self._refresh.items() if r.expires_at > now}
            alive = {r.family_id for r in self._refresh.values()}
            self._families = {
                k: f for k, f in self._families.items() if k in alive or f.created_at + grace > now
            }
            return before - self._size()

    def load_keys(self) -> list[KeyGeneration]:
        with self._lock:
            return sorted(self._keys.values(), key=lambda g: (g.created_at, g.id))

    def save_keys(self, keys: Sequence[KeyGeneration], removed: Sequence[str]) -> None:
        with self._lock:
            for key in keys:
                self._keys[key.id] = key
            for key_id in removed:
                self._keys.pop(key_id, None)

    def _size(self) -> int:
        return len(self._revoked) + len(self._codes) + len(self._refresh) + len(self._families)

    def _client(self, client_id: str) -> ClientRecord:
        record = self._clients.get(client_id)
        if record is None:
            raise ClientNotFound(client_id)
        return record

    def _revoke_family(self, family_id: str, now: float) -> list[Jti]:
        family = self._families.get(family_id)
        if family is None or family.revoked_at is not None:
            return []
        self._families[family_id] = replace(family, revoked_at=now)
        for key, token in self._refresh.items():
            if token.family_id == family_id and token.revoked_at is None:
                self._refresh[key] = replace(token, revoked_at=now)
        fresh = [(j, e) for j, e in family.access_jtis if e > now and j not in self._revoked]
        for jti, exp in fresh:
            self._revoked[jti] = exp
        return fresh
