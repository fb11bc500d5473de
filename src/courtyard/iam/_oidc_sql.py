"""The OpenID Connect provider's state in the platform database (SQLite or PostgreSQL).

One-use rules rest on conditional UPDATEs (``... WHERE used_at IS NULL``): of two concurrent
redemptions of a code or refresh token exactly one changes a row, the other is a reuse.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from courtyard.iam._keyring import KeyGeneration
from courtyard.iam._oidc_errors import ClientInvalid, ClientNotFound
from courtyard.iam._oidc_models import (
    ClientInfo,
    ClientRecord,
    CodeRecord,
    FamilyRecord,
    RefreshRecord,
)
from courtyard.iam._oidc_store import Jti
from courtyard.store import Database
from courtyard.store._schema_oidc import (
    oauth_clients_table as clients,
)
from courtyard.store._schema_oidc import (
    oauth_codes_table as codes,
)
from courtyard.store._schema_oidc import (
    oauth_families_table as families,
)
from courtyard.store._schema_oidc import (
    oauth_refresh_table as refresh_tokens,
)
from courtyard.store._schema_oidc import (
    revoked_jti_table as revoked,
)
from courtyard.store._schema_oidc import (
    signing_keys_table as signing_keys,
)


class SqlOidcStore:
    """An :class:`OidcStore` on a :class:`courtyard.store.Database`."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # clients

    def add_client(self, record: ClientRecord) -> None:
        info = record.info
        try:
            with self._db.begin() as connection:
                connection.execute(
                    insert(clients).values(
                        client_id=info.client_id,
                        app=info.app,
                        name=info.name,
                        public=info.public,
                        secret_hash=record.secret_hash,
                        redirect_uris=list(info.redirect_uris),
                        post_logout_redirect_uris=list(info.post_logout_redirect_uris),
                        grant_types=list(info.grant_types),
                        scopes=list(info.scopes),
                        audience=list(info.audience),
                        id_token_alg=info.id_token_alg,
                        created_at=info.created_at,
                    )
                )
        except IntegrityError:
            raise ClientInvalid("client_id", f"{info.client_id!r} is taken") from None

    def get_client(self, client_id: str) -> ClientRecord:
        with self._db.read() as connection:
            return _client_from(self._client_row(connection, client_id))

    def list_clients(self) -> list[ClientRecord]:
        query = select(clients).order_by(clients.c.created_at, clients.c.client_id)
        with self._db.read() as connection:
            return [_client_from(row) for row in connection.execute(query)]

    def set_client_secret(self, client_id: str, secret_hash: str) -> ClientRecord:
        with self._db.begin() as connection:
            result = connection.execute(
                update(clients)
                .where(clients.c.client_id == client_id)
                .values(secret_hash=secret_hash)
            )
            if result.rowcount == 0:
                raise ClientNotFound(client_id)
            return _client_from(self._client_row(connection, client_id))

    def delete_client(self, client_id: str, now: float) -> list[Jti]:
        with self._db.begin() as connection:
            self._client_row(connection, client_id, lock=True)
            ids = connection.execute(
                select(families.c.id).where(families.c.client_id == client_id)
            ).scalars()
            revoked_now: list[Jti] = []
            for family_id in list(ids):
                revoked_now += self._revoke_family(connection, family_id, now)
            for table in (codes, refresh_tokens, families):
                connection.execute(delete(table).where(table.c.client_id == client_id))
            connection.execute(delete(clients).where(clients.c.client_id == client_id))
            return revoked_now

    # codes

    def add_code(self, record: CodeRecord) -> None:
        with self._db.begin() as connection:
            connection.execute(
                insert(codes).values(
                    code_hash=record.code_hash,
                    client_id=record.client_id,
                    subject=record.subject,
                    session_id=record.session_id,
                    redirect_uri=record.redirect_uri,
                    scope=" ".join(record.scope),
                    nonce=record.nonce,
                    code_challenge=record.code_challenge,
                    auth_time=record.auth_time,
                    expires_at=record.expires_at,
                    used_at=record.used_at,
                    family_id=record.family_id,
                )
            )

    def get_code(self, code_hash: str) -> CodeRecord | None:
        with self._db.read() as connection:
            row = connection.execute(select(codes).where(codes.c.code_hash == code_hash)).first()
        if row is None:
            return None
        return CodeRecord(
            code_hash=row.code_hash,
            client_id=row.client_id,
            subject=row.subject,
            session_id=row.session_id,
            redirect_uri=row.redirect_uri,
            scope=tuple(row.scope.split()),
            nonce=row.nonce,
            code_challenge=row.code_challenge,
            auth_time=row.auth_time,
            expires_at=row.expires_at,
            used_at=row.used_at,
            family_id=row.family_id,
        )

    def redeem_code(
        self, code_hash: str, now: float, family: FamilyRecord, refresh: RefreshRecord | None
    ) -> bool:
        with self._db.begin() as connection:
            result = connection.execute(
                update(codes)
                .where(codes.c.code_hash == code_hash, codes.c.used_at.is_(None))
                .values(used_at=now, family_id=family.id)
            )
            if result.rowcount != 1:
                return False
            connection.execute(
                insert(families).values(
                    id=family.id,
                    client_id=family.client_id,
                    subject=family.subject,
                    created_at=family.created_at,
                    revoked_at=family.revoked_at,
                    access_jtis=[list(item) for item in family.access_jtis],
                )
            )
            if refresh is not None:
                self._insert_refresh(connection, refresh)
            return True

    # refresh tokens and families

    def get_refresh(self, token_hash: str) -> RefreshRecord | None:
        query = select(refresh_tokens).where(refresh_tokens.c.token_hash == token_hash)
        with self._db.read() as connection:
            row = connection.execute(query).first()
        if row is None:
            return None
        return RefreshRecord(
            token_hash=row.token_hash,
            family_id=row.family_id,
            client_id=row.client_id,
            subject=row.subject,
            scope=tuple(row.scope.split()),
            created_at=row.created_at,
            expires_at=row.expires_at,
            used_at=row.used_at,
            revoked_at=row.revoked_at,
        )

    def get_family(self, family_id: str) -> FamilyRecord | None:
        with self._db.read() as connection:
            row = connection.execute(select(families).where(families.c.id == family_id)).first()
        if row is None:
            return None
        return FamilyRecord(
            id=row.id,
            client_id=row.client_id,
            subject=row.subject,
            created_at=row.created_at,
            revoked_at=row.revoked_at,
            access_jtis=_jtis(row.access_jtis),
        )

    def rotate_refresh(
        self, token_hash: str, now: float, new: RefreshRecord | None, access: Jti
    ) -> bool:
        with self._db.begin() as connection:
            owner = connection.execute(
                select(refresh_tokens.c.family_id).where(refresh_tokens.c.token_hash == token_hash)
            ).scalar()
            if owner is None:
                return False
            family = connection.execute(
                select(families).where(families.c.id == owner).with_for_update()
            ).first()
            if family is None or family.revoked_at is not None:
                return False
            result = connection.execute(
                update(refresh_tokens)
                .where(
                    refresh_tokens.c.token_hash == token_hash,
                    refresh_tokens.c.used_at.is_(None),
                    refresh_tokens.c.revoked_at.is_(None),
                )
                .values(used_at=now)
            )
            if result.rowcount != 1:
                return False
            if new is not None:
                self._insert_refresh(connection, new)
            jtis = [list(item) for item in _jtis(family.access_jtis)] + [list(access)]
            connection.execute(
                update(families).where(families.c.id == owner).values(access_jtis=jtis)
            )
            return True

    def revoke_family(self, family_id: str, now: float) -> list[Jti]:
        with self._db.begin() as connection:
            return self._revoke_family(connection, family_id, now)

    # revoked access tokens

    def revoke_jtis(self, jtis: Sequence[Jti]) -> None:
        if not jtis:
            return
        with self._db.begin() as connection:
            self._insert_revoked(connection, jtis)

    def is_revoked(self, jti: str) -> bool:
        with self._db.read() as connection:
            found = connection.execute(select(revoked.c.jti).where(revoked.c.jti == jti)).first()
        return found is not None

    def revoked_jtis(self, now: float) -> list[Jti]:
        query = select(revoked).where(revoked.c.expires_at > now).order_by(revoked.c.jti)
        with self._db.read() as connection:
            return [(row.jti, row.expires_at) for row in connection.execute(query)]

    def purge(self, now: float, grace: float) -> int:
        with self._db.begin() as connection:
            count = 0
            for statement in (
                delete(revoked).where(revoked.c.expires_at <= now),
                delete(codes).where(codes.c.expires_at + grace <= now),
                delete(refresh_tokens).where(refresh_tokens.c.expires_at <= now),
                delete(families).where(
                    families.c.created_at + grace <= now,
                    ~families.c.id.in_(select(refresh_tokens.c.family_id).distinct()),
                ),
            ):
                count += connection.execute(statement).rowcount
            return count

    # signing keys

    def load_keys(self) -> list[KeyGeneration]:
        query = select(signing_keys).order_by(signing_keys.c.created_at, signing_keys.c.id)
        with self._db.read() as connection:
            return [
                KeyGeneration(
                    id=row.id,
                    state=row.state,
                    ec_jwk=json.loads(row.ec_jwk),
                    rsa_jwk=json.loads(row.rsa_jwk),
                    created_at=row.created_at,
                    activated_at=row.activated_at,
                    retired_at=row.retired_at,
                )
                for row in connection.execute(query)
            ]

    def save_keys(self, keys: Sequence[KeyGeneration], removed: Sequence[str]) -> None:
        with self._db.begin() as connection:
            for key in keys:
                values: dict[str, Any] = {
                    "state": key.state,
                    "ec_jwk": json.dumps(key.ec_jwk, sort_keys=True),
                    "rsa_jwk": json.dumps(key.rsa_jwk, sort_keys=True),
                    "created_at": key.created_at,
                    "activated_at": key.activated_at,
                    "retired_at": key.retired_at,
                }
                result = connection.execute(
                    update(signing_keys).where(signing_keys.c.id == key.id).values(values)
                )
                if result.rowcount == 0:
                    connection.execute(insert(signing_keys).values(id=key.id, **values))
            if removed:
                connection.execute(delete(signing_keys).where(signing_keys.c.id.in_(removed)))

    # helpers

    def _client_row(
        self, connection: Connection, client_id: str, *, lock: bool = False
    ) -> Row[Any]:
        query = select(clients).where(clients.c.client_id == client_id)
        if lock:
            query = query.with_for_update()
        row = connection.execute(query).first()
        if row is None:
            raise ClientNotFound(client_id)
        return row

    def _insert_refresh(self, connection: Connection, record: RefreshRecord) -> None:
        connection.execute(
            insert(refresh_tokens).values(
                token_hash=record.token_hash,
                family_id=record.family_id,
                client_id=record.client_id,
                subject=record.subject,
                scope=" ".join(record.scope),
                created_at=record.created_at,
                expires_at=record.expires_at,
                used_at=record.used_at,
                revoked_at=record.revoked_at,
            )
        )

    def _insert_revoked(self, connection: Connection, jtis: Sequence[Jti]) -> None:
        rows = [{"jti": jti, "expires_at": exp} for jti, exp in jtis]
        if self._db.dialect == "postgresql":
            connection.execute(postgresql.insert(revoked).values(rows).on_conflict_do_nothing())
        else:
            connection.execute(sqlite.insert(revoked).values(rows).on_conflict_do_nothing())

    def _revoke_family(self, connection: Connection, family_id: str, now: float) -> list[Jti]:
        family = connection.execute(
            select(families).where(families.c.id == family_id).with_for_update()
        ).first()
        if family is None or family.revoked_at is not None:
            return []
        connection.execute(
            update(families).where(families.c.id == family_id).values(revoked_at=now)
        )
        connection.execute(
            update(refresh_tokens)
            .where(refresh_tokens.c.family_id == family_id, refresh_tokens.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        live = [(jti, exp) for jti, exp in _jtis(family.access_jtis) if exp > now]
        if not live:
            return []
        known = set(
            connection.execute(
                select(revoked.c.jti).where(revoked.c.jti.in_([jti for jti, _ in live]))
            ).scalars()
        )
        fresh = [(jti, exp) for jti, exp in live if jti not in known]
        if fresh:
            self._insert_revoked(connection, fresh)
        return fresh


def _jtis(value: Any) -> tuple[Jti, ...]:
    return tuple((str(jti), float(exp)) for jti, exp in value or ())


def _client_from(row: Row[Any]) -> ClientRecord:
    info = ClientInfo(
        client_id=row.client_id,
        app=row.app,
        name=row.name,
        public=bool(row.public),
        redirect_uris=tuple(row.redirect_uris),
        post_logout_redirect_uris=tuple(row.post_logout_redirect_uris),
        grant_types=tuple(row.grant_types),
        scopes=tuple(row.scopes),
        audience=tuple(row.audience),
        id_token_alg=row.id_token_alg,
        created_at=row.created_at,
    )
    return ClientRecord(info, row.secret_hash)
