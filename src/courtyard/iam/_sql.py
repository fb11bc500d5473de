"""The directory in the platform database (SQLite or PostgreSQL), safe across threads.

Uniqueness (e-mails, group and service names, cookie and token hashes) rests on the tables'
keys: a writer that loses a race gets an IntegrityError and reports the duplicate. One-time
credentials are spent with a conditional UPDATE, so only one of two racing requests wins.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import and_, delete, insert, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from courtyard.iam._errors import (
    DuplicateGroup,
    DuplicateServiceAccount,
    DuplicateUser,
    GroupNotFound,
    ServiceAccountNotFound,
    SessionNotFound,
    TokenNotFound,
    UserNotFound,
)
from courtyard.iam._models import (
    Group,
    RoleBinding,
    ServiceAccount,
    SessionRecord,
    TokenRecord,
    UserRecord,
)
from courtyard.store import Database
from courtyard.store._schema_iam import (
    api_tokens_table,
    group_members_table,
    groups_table,
    role_bindings_table,
    service_accounts_table,
    sessions_table,
    users_table,
)

# Keep IN (...) lists well under SQLite's bound-parameter limit.
_CHUNK = 500


class SqlIamStore:
    """An :class:`IamStore` on a :class:`courtyard.store.Database`."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # users
    def add_user(self, record: UserRecord) -> None:
        try:
            with self._db.begin() as connection:
                connection.execute(insert(users_table).values(_user_row(record)))
        except IntegrityError:
            raise DuplicateUser(record.email) from None

    def get_user(self, user_id: str) -> UserRecord:
        with self._db.read() as connection:
            return self._user(connection, user_id)

    def find_user(self, email: str) -> UserRecord | None:
        with self._db.read() as connection:
            row = connection.execute(select(users_table).where(users_table.c.email == email))
            found = row.first()
        return _user_from(found) if found is not None else None

    def list_users(self) -> list[UserRecord]:
        with self._db.read() as connection:
            rows = connection.execute(select(users_table).order_by(users_table.c.email))
            return [_user_from(row) for row in rows]

    def put_user(self, record: UserRecord) -> None:
        try:
            with self._db.begin() as connection:
                result = connection.execute(
                    update(users_table)
                    .where(users_table.c.id == record.id)
                    .values(
                        email=record.email,
                        name=record.name,
                        status=record.status,
                        updated_at=record.updated_at,
                        password_hash=record.password_hash,
                        totp_pending=record.totp_pending,
                    )
                )
                if result.rowcount == 0:
                    raise UserNotFound(record.id)
        except IntegrityError:
            raise DuplicateUser(record.email) from None

    def set_totp(
        self, user_id: str, secret: str | None, last_step: int | None, codes: Sequence[str]
    ) -> None:
        with self._db.begin() as connection:
            result = connection.execute(
                update(users_table)
                .where(users_table.c.id == user_id)
                .values(
                    totp_secret=secret,
                    totp_pending=None,
                    totp_last_step=last_step,
                    recovery_codes=list(codes),
                )
            )
            if result.rowcount == 0:
                raise UserNotFound(user_id)

    def delete_user(self, user_id: str) -> None:
        subject = f"user:{user_id}"
        with self._db.begin() as connection:
            self._user(connection, user_id)
            connection.execute(
                delete(group_members_table).where(group_members_table.c.user_id == user_id)
            )
            connection.execute(
                delete(role_bindings_table).where(role_bindings_table.c.subject == subject)
            )
            connection.execute(delete(sessions_table).where(sessions_table.c.user_id == user_id))
            connection.execute(delete(api_tokens_table).where(api_tokens_table.c.owner == subject))
            connection.execute(delete(users_table).where(users_table.c.id == user_id))

    def use_totp_step(self, user_id: str, step: int) -> bool:
        column = users_table.c.totp_last_step
        with self._db.begin() as connection:
            result = connection.execute(
                update(users_table)
                .where(users_table.c.id == user_id)
                .where(or_(column.is_(None), column < step))
                .values(totp_last_step=step)
            )
            return result.rowcount == 1

    def spend_recovery_code(
        self, user_id: str, expected: Sequence[str], remaining: Sequence[str]
    ) -> bool:
        # JSON columns cannot be compared portably, so read and write under a row lock.
        with self._db.begin() as connection:
            query = select(users_table.c.recovery_codes).where(users_table.c.id == user_id)
            stored = connection.execute(query.with_for_update()).scalar_one_or_none()
            if stored is None or tuple(stored) != tuple(expected):
                return False
            connection.execute(
                update(users_table)
                .where(users_table.c.id == user_id)
                .values(recovery_codes=list(remaining))
            )
            return True

    def _user(self, connection: Connection, user_id: str) -> UserRecord:
        row = connection.execute(select(users_table).where(users_table.c.id == user_id)).first()
        if row is None:
            raise UserNotFound(user_id)
        return _user_from(row)

    # groups
    def add_group(self, name: str, title: str, now: float) -> Group:
        try:
            with self._db.begin() as connection:
                connection.execute(
                    insert(groups_table).values(name=name, title=title, created_at=now)
                )
        except IntegrityError:
            raise DuplicateGroup(name) from None
        return Group(name=name, title=title, members=())

    def get_group(self, name: str) -> Group:
        with self._db.read() as connection:
            return self._group(connection, name)

    def list_groups(self) -> list[Group]:
        with self._db.read() as connection:
            rows = connection.execute(select(groups_table).order_by(groups_table.c.name)).all()
            members: dict[str, list[str]] = {}
            query = select(group_members_table).order_by(group_members_table.c.user_id)
            for row in connection.execute(query):
                members.setdefault(row.group_name, []).append(row.user_id)
        return [Group(r.name, r.title, tuple(members.get(r.name, ()))) for r in rows]

    def delete_group(self, name: str) -> None:
        with self._db.begin() as connection:
            self._group(connection, name)
            connection.execute(
                delete(group_members_table).where(group_members_table.c.group_name == name)
            )
            connection.execute(
                delete(role_bindings_table).where(role_bindings_table.c.subject == f"group:{name}")
            )
            connection.execute(delete(groups_table).where(groups_table.c.name == name))

    def set_member(self, group: str, user_id: str, member: bool) -> Group:
        table = group_members_table
        key = and_(table.c.group_name == group, table.c.user_id == user_id)
        with self._db.begin() as connection:
            self._group(connection, group)
            self._user(connection, user_id)
            present = connection.execute(select(table.c.user_id).where(key)).first() is not None
            if member and not present:
                connection.execute(insert(table).values(group_name=group, user_id=user_id))
            elif not member and present:
                connection.execute(delete(table).where(key))
            return self._group(connection, group)

    def groups_of(self, user_id: str) -> list[str]:
        table = group_members_table
        query = select(table.c.group_name).where(table.c.user_id == user_id)
        with self._db.read() as connection:
            return sorted(connection.execute(query).scalars())

    def _group(self, connection: Connection, name: str) -> Group:
        row = connection.execute(select(groups_table).where(groups_table.c.name == name)).first()
        if row is None:
            raise GroupNotFound(name)
        query = (
            select(group_members_table.c.user_id)
            .where(group_members_table.c.group_name == name)
            .order_by(group_members_table.c.user_id)
        )
        return Group(row.name, row.title, tuple(connection.execute(query).scalars()))

    # role bindings
    def add_binding(self, binding: RoleBinding, now: float) -> bool:
        values = {
            "role": binding.role,
            "subject": binding.subject,
            "app": binding.app or "",
            "created_at": now,
        }
        try:
            with self._db.begin() as connection:
                if connection.execute(
                    select(role_bindings_table).where(_binding_key(binding))
                ).first():
                    return False
                connection.execute(insert(role_bindings_table).values(values))
        except IntegrityError:
            return False
        return True

    def remove_binding(self, binding: RoleBinding) -> bool:
        with self._db.begin() as connection:
            result = connection.execute(delete(role_bindings_table).where(_binding_key(binding)))
            return result.rowcount > 0

    def list_bindings(
        self, *, subjects: Iterable[str] | None = None, app: str | None = None
    ) -> list[RoleBinding]:
        table = role_bindings_table
        query = select(table).order_by(table.c.role, table.c.subject, table.c.app)
        if app is not None:
            query = query.where(table.c.app == app)
        with self._db.read() as connection:
            if subjects is None:
                rows = connection.execute(query).all()
            else:
                rows = []
                for chunk in _chunks(list(subjects)):
                    rows.extend(connection.execute(query.where(table.c.subject.in_(chunk))))
        found = [RoleBinding(r.role, r.subject, r.app or None) for r in rows]
        return sorted(found, key=lambda b: (b.role, b.subject, b.app or ""))

    # service accounts
    def add_service(self, account: ServiceAccount) -> None:
        try:
            with self._db.begin() as connection:
                connection.execute(
                    insert(service_accounts_table).values(
                        name=account.name, title=account.title, created_at=account.created_at
                    )
                )
        except IntegrityError:
            raise DuplicateServiceAccount(account.name) from None

    def get_service(self, name: str) -> ServiceAccount:
        with self._db.read() as connection:
            return self._service(connection, name)

    def list_services(self) -> list[ServiceAccount]:
        table = service_accounts_table
        with self._db.read() as connection:
            rows = connection.execute(select(table).order_by(table.c.name))
            return [ServiceAccount(r.name, r.title, r.created_at) for r in rows]

    def delete_service(self, name: str) -> None:
        subject = f"service:{name}"
        with self._db.begin() as connection:
            self._service(connection, name)
            connection.execute(
                delete(role_bindings_table).where(role_bindings_table.c.subject == subject)
            )
            connection.execute(delete(api_tokens_table).where(api_tokens_table.c.owner == subject))
            connection.execute(
                delete(service_accounts_table).where(service_accounts_table.c.name == name)
            )

    def _service(self, connection: Connection, name: str) -> ServiceAccount:
        table = service_accounts_table
        row = connection.execute(select(table).where(table.c.name == name)).first()
        if row is None:
            raise ServiceAccountNotFound(name)
        return ServiceAccount(row.name, row.title, row.created_at)

    # sessions
    def add_session(self, record: SessionRecord) -> None:
        with self._db.begin() as connection:
            self._user(connection, record.user_id)
            connection.execute(insert(sessions_table).values(_session_row(record)))

    def get_session(self, session_id: str) -> SessionRecord:
        query = select(sessions_table).where(sessions_table.c.id == session_id)
        with self._db.read() as connection:
            row = connection.execute(query).first()
        if row is None:
            raise SessionNotFound(session_id)
        return _session_from(row)

    def sessions_by_keys(self, key_hashes: Iterable[str]) -> list[SessionRecord]:
        found: list[SessionRecord] = []
        with self._db.read() as connection:
            for chunk in _chunks(list(key_hashes)):
                query = select(sessions_table).where(sessions_table.c.key_hash.in_(chunk))
                found.extend(_session_from(row) for row in connection.execute(query))
        return found

    def list_sessions(self, user_id: str | None = None) -> list[SessionRecord]:
        table = sessions_table
        query = select(table).where(table.c.revoked_at.is_(None))
        if user_id is not None:
            query = query.where(table.c.user_id == user_id)
        with self._db.read() as connection:
            rows = connection.execute(query.order_by(table.c.created_at, table.c.id))
            return [_session_from(row) for row in rows]

    def revoke_sessions(self, session_ids: Iterable[str], now: float) -> list[SessionRecord]:
        table = sessions_table
        revoked: list[SessionRecord] = []
        with self._db.begin() as connection:
            for chunk in _chunks(sorted(set(session_ids))):
                live = and_(table.c.id.in_(chunk), table.c.revoked_at.is_(None))
                rows = connection.execute(select(table).where(live).with_for_update()).all()
                if rows:
                    ids = [row.id for row in rows]
                    connection.execute(
                        update(table).where(table.c.id.in_(ids)).values(revoked_at=now)
                    )
                    revoked.extend(_session_from(row, revoked_at=now) for row in rows)
        return revoked

    def touch_sessions(self, seen: Mapping[str, tuple[float, float]]) -> None:
        if not seen:
            return
        with self._db.begin() as connection:
            for session_id in sorted(seen):
                last_seen, idle_end = seen[session_id]
                connection.execute(
                    update(sessions_table)
                    .where(sessions_table.c.id == session_id)
                    .values(last_seen=last_seen, idle_expires_at=idle_end)
                )

    def purge_sessions(self, before: float) -> int:
        table = sessions_table
        ended = or_(
            table.c.revoked_at < before,
            table.c.expires_at < before,
            table.c.idle_expires_at < before,
        )
        with self._db.begin() as connection:
            return int(connection.execute(delete(table).where(ended)).rowcount)

    # tokens
    def add_token(self, record: TokenRecord) -> None:
        with self._db.begin() as connection:
            connection.execute(insert(api_tokens_table).values(_token_row(record)))

    def get_token(self, token_id: str) -> TokenRecord:
        with self._db.read() as connection:
            return self._token(connection, token_id)

    def tokens_by_lookup(self, lookup_hashes: Iterable[str]) -> list[TokenRecord]:
        found: list[TokenRecord] = []
        with self._db.read() as connection:
            for chunk in _chunks(list(lookup_hashes)):
                query = select(api_tokens_table).where(api_tokens_table.c.lookup_hash.in_(chunk))
                found.extend(_token_from(row) for row in connection.execute(query))
        return found

    def list_tokens(self, owner: str | None = None) -> list[TokenRecord]:
        table = api_tokens_table
        query = select(table).order_by(table.c.created_at, table.c.id)
        if owner is not None:
            query = query.where(table.c.owner == owner)
        with self._db.read() as connection:
            return [_token_from(row) for row in connection.execute(query)]

    def revoke_token(self, token_id: str, now: float) -> TokenRecord:
        table = api_tokens_table
        with self._db.begin() as connection:
            self._token(connection, token_id)
            connection.execute(
                update(table)
                .where(table.c.id == token_id, table.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            return self._token(connection, token_id)

    def touch_tokens(self, used: Mapping[str, float]) -> None:
        if not used:
            return
        with self._db.begin() as connection:
            for token_id in sorted(used):
                connection.execute(
                    update(api_tokens_table)
                    .where(api_tokens_table.c.id == token_id)
                    .values(last_used_at=used[token_id])
                )

    def _token(self, connection: Connection, token_id: str) -> TokenRecord:
        query = select(api_tokens_table).where(api_tokens_table.c.id == token_id)
        row = connection.execute(query).first()
        if row is None:
            raise TokenNotFound(token_id)
        return _token_from(row)


def _chunks(items: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _binding_key(binding: RoleBinding) -> Any:
    table = role_bindings_table
    return and_(
        table.c.role == binding.role,
        table.c.subject == binding.subject,
        table.c.app == (binding.app or ""),
    )


def _user_row(record: UserRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "email": record.email,
        "name": record.name,
        "status": record.status,
        "password_hash": record.password_hash,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "totp_secret": record.totp_secret,
        "totp_pending": record.totp_pending,
        "totp_last_step": record.totp_last_step,
        "recovery_codes": list(record.recovery_codes),
    }


def _user_from(row: Any) -> UserRecord:
    return UserRecord(
        id=row.id,
        email=row.email,
        name=row.name,
        status=row.status,
        created_at=row.created_at,
        updated_at=row.updated_at,
        password_hash=row.password_hash,
        totp_secret=row.totp_secret,
        totp_pending=row.totp_pending,
        totp_last_step=row.totp_last_step,
        recovery_codes=tuple(row.recovery_codes or ()),
    )


def _session_row(record: SessionRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "key_hash": record.key_hash,
        "user_id": record.user_id,
        "created_at": record.created_at,
        "last_seen": record.last_seen,
        "expires_at": record.expires_at,
        "idle_expires_at": record.idle_expires_at,
        "client": record.client,
        "user_agent": record.user_agent,
        "methods": list(record.methods),
        "revoked_at": record.revoked_at,
    }


def _session_from(row: Any, *, revoked_at: float | None = None) -> SessionRecord:
    return SessionRecord(
        id=row.id,
        key_hash=row.key_hash,
        user_id=row.user_id,
        created_at=row.created_at,
        last_seen=row.last_seen,
        expires_at=row.expires_at,
        idle_expires_at=row.idle_expires_at,
        client=row.client,
        user_agent=row.user_agent,
        methods=tuple(row.methods),
        revoked_at=revoked_at if revoked_at is not None else row.revoked_at,
    )


def _token_row(record: TokenRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "owner": record.owner,
        "name": record.name,
        "secret_hash": record.secret_hash,
        "lookup_hash": record.lookup_hash,
        "scopes": list(record.scopes),
        "created_at": record.created_at,
        "expires_at": record.expires_at,
        "last_used_at": record.last_used_at,
        "revoked_at": record.revoked_at,
    }


def _token_from(row: Any) -> TokenRecord:
    return TokenRecord(
        id=row.id,
        owner=row.owner,
        name=row.name,
        secret_hash=row.secret_hash,
        lookup_hash=row.lookup_hash,
        scopes=tuple(row.scopes),
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )
