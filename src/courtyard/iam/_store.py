"""Where the directory keeps its state: the ``IamStore`` protocol and its in-memory backend.

Every method is one atomic step. The two that spend a one-time credential (a TOTP time step,
a recovery code) compare and set, so two requests racing with the same code cannot both win
(RFC 6238 §5.2, OWASP ASVS V2.6.1).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Protocol

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


class IamStore(Protocol):
    """Persistence of users, groups, bindings, service accounts, sessions and tokens.

    Methods are synchronous and thread-safe: :class:`Iam` runs them in worker threads.
    E-mails arrive lower-cased; the store keeps them unique.
    """

    # users
    def add_user(self, record: UserRecord) -> None:
        """Insert a user; raises DuplicateUser if the e-mail is taken."""
        ...

    def get_user(self, user_id: str) -> UserRecord:
        """The user with ``user_id``; raises UserNotFound."""
        ...

    def find_user(self, email: str) -> UserRecord | None:
        """The user with ``email`` (lower-cased), or None."""
        ...

    def list_users(self) -> list[UserRecord]:
        """Every user, by e-mail."""
        ...

    def put_user(self, record: UserRecord) -> None:
        """Replace the profile, password hash and pending TOTP secret; raises UserNotFound or
        DuplicateUser. The second factor's state is left alone (see :meth:`set_totp`), so a
        stale read can never roll back a spent code."""
        ...

    def set_totp(
        self, user_id: str, secret: str | None, last_step: int | None, codes: Sequence[str]
    ) -> None:
        """Install (or with None, remove) the second factor and clear any pending secret."""
        ...

    def delete_user(self, user_id: str) -> None:
        """Delete the user, their memberships, bindings, sessions and tokens."""
        ...

    def use_totp_step(self, user_id: str, step: int) -> bool:
        """Record ``step`` as the last accepted one unless it is not newer than the stored one."""
        ...

    def spend_recovery_code(
        self, user_id: str, expected: Sequence[str], remaining: Sequence[str]
    ) -> bool:
        """Replace the recovery hashes with ``remaining`` if they still equal ``expected``."""
        ...

    # groups
    def add_group(self, name: str, title: str, now: float) -> Group:
        """Create an empty group; raises DuplicateGroup."""
        ...

    def get_group(self, name: str) -> Group:
        """The group; raises GroupNotFound."""
        ...

    def list_groups(self) -> list[Group]:
        """Every group, by name."""
        ...

    def delete_group(self, name: str) -> None:
        """Delete the group, its memberships and its bindings; raises GroupNotFound."""
        ...

    def set_member(self, group: str, user_id: str, member: bool) -> Group:
        """Add or remove ``user_id`` (idempotent); raises GroupNotFound or UserNotFound."""
        ...

    def groups_of(self, user_id: str) -> list[str]:
        """The names of the groups ``user_id`` belongs to, sorted."""
        ...

    # role bindings
    def add_binding(self, binding: RoleBinding, now: float) -> bool:
        """Store ``binding``; False if it existed already."""
        ...

    def remove_binding(self, binding: RoleBinding) -> bool:
        """Delete ``binding``; False if there was none."""
        ...

    def list_bindings(
        self, *, subjects: Iterable[str] | None = None, app: str | None = None
    ) -> list[RoleBinding]:
        """Bindings of any of ``subjects`` (all if None), in ``app`` if given ("" = global)."""
        ...

    # service accounts
    def add_service(self, account: ServiceAccount) -> None:
        """Create a service account; raises DuplicateServiceAccount."""
        ...

    def get_service(self, name: str) -> ServiceAccount:
        """The service account; raises ServiceAccountNotFound."""
        ...

    def list_services(self) -> list[ServiceAccount]:
        """Every service account, by name."""
        ...

    def delete_service(self, name: str) -> None:
        """Delete the account, its bindings and its tokens; raises ServiceAccountNotFound."""
        ...

    # sessions
    def add_session(self, record: SessionRecord) -> None:
        """Store a new session."""
        ...

    def get_session(self, session_id: str) -> SessionRecord:
        """The session with public id ``session_id``; raises SessionNotFound."""
        ...

    def sessions_by_keys(self, key_hashes: Iterable[str]) -> list[SessionRecord]:
        """The sessions whose cookie hashes are among ``key_hashes``."""
        ...

    def list_sessions(self, user_id: str | None = None) -> list[SessionRecord]:
        """Unrevoked sessions (of ``user_id`` if given), oldest first; expiry is not checked."""
        ...

    def revoke_sessions(self, session_ids: Iterable[str], now: float) -> list[SessionRecord]:
        """Mark the sessions revoked; returns those that were not revoked before."""
        ...

    def touch_sessions(self, seen: Mapping[str, tuple[float, float]]) -> None:
        """Set ``(last_seen, idle_expires_at)`` of each session id in ``seen``."""
        ...

    def purge_sessions(self, before: float) -> int:
        """Delete sessions revoked or ended before ``before``; returns how many."""
        ...

    # tokens
    def add_token(self, record: TokenRecord) -> None:
        """Store a new token."""
        ...

    def get_token(self, token_id: str) -> TokenRecord:
        """The token; raises TokenNotFound."""
        ...

    def tokens_by_lookup(self, lookup_hashes: Iterable[str]) -> list[TokenRecord]:
        """The tokens whose whole-token hashes are among ``lookup_hashes``."""
        ...

    def list_tokens(self, owner: str | None = None) -> list[TokenRecord]:
        """Tokens (of ``owner`` if given), revoked ones included, oldest first."""
        ...

    def revoke_token(self, token_id: str, now: float) -> TokenRecord:
        """Mark the token revoked (keeping the first time); raises TokenNotFound."""
        ...

    def touch_tokens(self, used: Mapping[str, float]) -> None:
        """Set ``last_used_at`` of each token id in ``used``."""
        ...


class MemoryIamStore:
    """An IAM store in dicts behind a lock: for tests and throw-away dev nodes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users: dict[str, UserRecord] = {}
        self._groups: dict[str, tuple[str, float]] = {}  # name -> (title, created_at)
        self._members: set[tuple[str, str]] = set()  # (group, user id)
        self._bindings: dict[tuple[str, str, str], float] = {}  # (role, subject, app) -> time
        self._services: dict[str, ServiceAccount] = {}
        self._sessions: dict[str, SessionRecord] = {}
        self._tokens: dict[str, TokenRecord] = {}

    # users
    def add_user(self, record: UserRecord) -> None:
        with self._lock:
            self._check_email(record)
            self._users[record.id] = record

    def get_user(self, user_id: str) -> UserRecord:
        with self._lock:
            return self._user(user_id)

    def find_user(self, email: str) -> UserRecord | None:
        with self._lock:
            return next((u for u in self._users.values() if u.email == email), None)

    def list_users(self) -> list[UserRecord]:
        with self._lock:
            return sorted(self._users.values(), key=lambda u: u.email)

    def put_user(self, record: UserRecord) -> None:
        with self._lock:
            current = self._user(record.id)
            self._check_email(record)
            self._users[record.id] = replace(
                record,
                totp_secret=current.totp_secret,
                totp_last_step=current.totp_last_step,
                recovery_codes=current.recovery_codes,
            )

    def set_totp(
        self, user_id: str, secret: str | None, last_step: int | None, codes: Sequence[str]
    ) -> None:
        with self._lock:
            self._users[user_id] = replace(
                self._user(user_id),
                totp_secret=secret,
                totp_pending=None,
                totp_last_step=last_step,
                recovery_codes=tuple(codes),
            )

    def delete_user(self, user_id: str) -> None:
        with self._lock:
            self._user(user_id)
            del self._users[user_id]
            self._members = {m for m in self._members if m[1] != user_id}
            subject = f"user:{user_id}"
            self._bindings = {k: v for k, v in self._bindings.items() if k[1] != subject}
            self._sessions = {k: s for k, s in self._sessions.items() if s.user_id != user_id}
            self._tokens = {k: t for k, t in self._tokens.items() if t.owner != subject}

    def use_totp_step(self, user_id: str, step: int) -> bool:
        with self._lock:
            user = self._user(user_id)
            if user.totp_last_step is not None and step <= user.totp_last_step:
                return False
            self._users[user_id] = replace(user, totp_last_step=step)
            return True

    def spend_recovery_code(
        self, user_id: str, expected: Sequence[str], remaining: Sequence[str]
    ) -> bool:
        with self._lock:
            user = self._user(user_id)
            if user.recovery_codes != tuple(expected):
                return False
            self._users[user_id] = replace(user, recovery_codes=tuple(remaining))
            return True

    def _user(self, user_id: str) -> UserRecord:
        user = self._users.get(user_id)
        if user is None:
            raise UserNotFound(user_id)
        return user

    def _check_email(self, record: UserRecord) -> None:
        for other in self._users.values():
            if other.email == record.email and other.id != record.id:
                raise DuplicateUser(record.email)

    # groups
    def add_group(self, name: str, title: str, now: float) -> Group:
        with self._lock:
            if name in self._groups:
                raise DuplicateGroup(name)
            self._groups[name] = (title, now)
            return self._group(name)

    def get_group(self, name: str) -> Group:
        with self._lock:
            return self._group(name)

    def list_groups(self) -> list[Group]:
        with self._lock:
            return [self._group(name) for name in sorted(self._groups)]

    def delete_group(self, name: str) -> None:
        with self._lock:
            self._group(name)
            del self._groups[name]
            self._members = {m for m in self._members if m[0] != name}
            subject = f"group:{name}"
            self._bindings = {k: v for k, v in self._bindings.items() if k[1] != subject}

    def set_member(self, group: str, user_id: str, member: bool) -> Group:
        with self._lock:
            self._group(group)
            self._user(user_id)
            if member:
                self._members.add((group, user_id))
            else:
                self._members.discard((group, user_id))
            return self._group(group)

    def groups_of(self, user_id: str) -> list[str]:
        with self._lock:
            return sorted(g for g, u in self._members if u == user_id)

    def _group(self, name: str) -> Group:
        entry = self._groups.get(name)
        if entry is None:
            raise GroupNotFound(name)
        members = tuple(sorted(u for g, u in self._members if g == name))
        return Group(name=name, title=entry[0], members=members)

    # role bindings
    def add_binding(self, binding: RoleBinding, now: float) -> bool:
        key = (binding.role, binding.subject, binding.app or "")
        with self._lock:
            if key in self._bindings:
                return False
            self._bindings[key] = now
            return True

    def remove_binding(self, binding: RoleBinding) -> bool:
        key = (binding.role, binding.subject, binding.app or "")
        with self._lock:
            return self._bindings.pop(key, None) is not None

    def list_bindings(
        self, *, subjects: Iterable[str] | None = None, app: str | None = None
    ) -> list[RoleBinding]:
        wanted = None if subjects is None else set(subjects)
        with self._lock:
            keys = sorted(self._bindings)
        return [
            RoleBinding(role=role, subject=subject, app=scope or None)
            for role, subject, scope in keys
            if (wanted is None or subject in wanted) and (app is None or scope == app)
        ]

    # service accounts
    def add_service(self, account: ServiceAccount) -> None:
        with self._lock:
            if account.name in self._services:
                raise DuplicateServiceAccount(account.name)
            self._services[account.name] = account

    def get_service(self, name: str) -> ServiceAccount:
        with self._lock:
            return self._service(name)

    def list_services(self) -> list[ServiceAccount]:
        with self._lock:
            return [self._services[name] for name in sorted(self._services)]

    def delete_service(self, name: str) -> None:
        with self._lock:
            self._service(name)
            del self._services[name]
            subject = f"service:{name}"
            self._bindings = {k: v for k, v in self._bindings.items() if k[1] != subject}
            self._tokens = {k: t for k, t in self._tokens.items() if t.owner != subject}

    def _service(self, name: str) -> ServiceAccount:
        account = self._services.get(name)
        if account is None:
            raise ServiceAccountNotFound(name)
        return account

    # sessions
    def add_session(self, record: SessionRecord) -> None:
        with self._lock:
            self._user(record.user_id)
            self._sessions[record.id] = record

    def get_session(self, session_id: str) -> SessionRecord:
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                raise SessionNotFound(session_id)
            return session

    def sessions_by_keys(self, key_hashes: Iterable[str]) -> list[SessionRecord]:
        wanted = set(key_hashes)
        with self._lock:
            return [s for s in self._sessions.values() if s.key_hash in wanted]

    def list_sessions(self, user_id: str | None = None) -> list[SessionRecord]:
        with self._lock:
            found = [
                s
                for s in self._sessions.values()
                if s.revoked_at is None and (user_id is None or s.user_id == user_id)
            ]
        return sorted(found, key=lambda s: (s.created_at, s.id))

    def revoke_sessions(self, session_ids: Iterable[str], now: float) -> list[SessionRecord]:
        revoked = []
        with self._lock:
            for session_id in session_ids:
                session = self._sessions.get(session_id)
                if session is not None and session.revoked_at is None:
                    session = replace(session, revoked_at=now)
                    self._sessions[session_id] = session
                    revoked.append(session)
        return revoked

    def touch_sessions(self, seen: Mapping[str, tuple[float, float]]) -> None:
        with self._lock:
            for session_id, (last_seen, idle_end) in seen.items():
                session = self._sessions.get(session_id)
                if session is not None:
                    self._sessions[session_id] = replace(
                        session, last_seen=last_seen, idle_expires_at=idle_end
                    )

    def purge_sessions(self, before: float) -> int:
        with self._lock:
            gone = [
                k
                for k, s in self._sessions.items()
                if (s.revoked_at is not None and s.revoked_at < before)
                or min(s.expires_at, s.idle_expires_at) < before
            ]
            for key in gone:
                del self._sessions[key]
            return len(gone)

    # tokens
    def add_token(self, record: TokenRecord) -> None:
        with self._lock:
            self._tokens[record.id] = record

    def get_token(self, token_id: str) -> TokenRecord:
        with self._lock:
            return self._token(token_id)

    def tokens_by_lookup(self, lookup_hashes: Iterable[str]) -> list[TokenRecord]:
        wanted = set(lookup_hashes)
        with self._lock:
            return [t for t in self._tokens.values() if t.lookup_hash in wanted]

    def list_tokens(self, owner: str | None = None) -> list[TokenRecord]:
        with self._lock:
            found = [t for t in self._tokens.values() if owner is None or t.owner == owner]
        return sorted(found, key=lambda t: (t.created_at, t.id))

    def revoke_token(self, token_id: str, now: float) -> TokenRecord:
        with self._lock:
            token = self._token(token_id)
            if token.revoked_at is None:
                token = replace(token, revoked_at=now)
                self._tokens[token_id] = token
            return token

    def touch_tokens(self, used: Mapping[str, float]) -> None:
        with self._lock:
            for token_id, when in used.items():
                token = self._tokens.get(token_id)
                if token is not None:
                    self._tokens[token_id] = replace(token, last_used_at=when)

    def _token(self, token_id: str) -> TokenRecord:
        token = self._tokens.get(token_id)
        if token is None:
            raise TokenNotFound(token_id)
        return token
