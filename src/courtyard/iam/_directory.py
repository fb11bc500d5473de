"""The people directory: users, groups, role bindings and service accounts, each change
audited and pushed to the gateways when it changes what a credential may do.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from courtyard.contracts import APP_ROLES, PLATFORM_ROLES
from courtyard.core import is_dns_label
from courtyard.iam._base import IamBase, normalize_email
from courtyard.iam._errors import (
    InvalidEmail,
    InvalidInput,
    InvalidName,
    InvalidRole,
    InvalidSubject,
    UserDisabled,
)
from courtyard.iam._models import (
    Group,
    Principal,
    RoleBinding,
    ServiceAccount,
    User,
    UserRecord,
    UserStatus,
)
from courtyard.iam._principals import user_principal
from courtyard.iam._store import IamStore

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")


class DirectoryOps(IamBase):
    """Users, groups, roles and service accounts (part of :class:`courtyard.iam.Iam`)."""

    # -- directory: users ---------------------------------------------------------------------

    async def create_user(
        self,
        caller: Principal | None,
        email: str,
        name: str,
        password: str | None = None,
        *,
        roles: Iterable[str] = (),
    ) -> User:
        """Add a person (optionally with a password and platform roles); raises DuplicateUser."""
        address = normalize_email(email)
        if _EMAIL.fullmatch(address) is None or len(address) > 254:
            raise InvalidEmail(email)
        roles = tuple(roles)
        for role in roles:
            _check_role(role, None)
        password_hash = None
        if password is not None:
            self._policy.check(password, context=(address, address.split("@")[0], name))
            password_hash = await self._run(self._hasher.hash, password)
        now = self._clock.time()
        record = UserRecord(
            id=f"u_{secrets.token_hex(8)}",
            email=address,
            name=name.strip()[:255] or address,
            status="active",
            created_at=now,
            updated_at=now,
            password_hash=password_hash,
        )
        await self._run(self._store.add_user, record)
        await self._record(
            caller, "iam.user.create", f"user:{record.id}", details={"email": address}
        )
        for role in roles:
            await self.grant(caller, role, f"user:{record.id}")
        return record.public()

    async def get_user(self, ref: str) -> User:
        """The user with id or e-mail ``ref``; raises UserNotFound."""
        return (await self._user(ref)).public()

    async def list_users(self) -> list[User]:
        """Every user, by e-mail."""
        return [record.public() for record in await self._run(self._store.list_users)]

    async def update_user(
        self,
        caller: Principal | None,
        ref: str,
        *,
        name: str | None = None,
        status: UserStatus | None = None,
    ) -> User:
        """Rename or enable/disable a user; disabling ends their sessions at once."""
        if status is not None and status not in ("active", "disabled"):
            raise InvalidInput("status", "must be 'active' or 'disabled'")
        record = await self._user(ref)
        changes: dict[str, Any] = {}
        if name is not None and name.strip() != record.name:
            changes["name"] = name.strip()[:255]
        if status is not None and status != record.status:
            changes["status"] = status
        if not changes:
            return record.public()
        updated = replace(record, updated_at=self._clock.time(), **changes)
        await self._run(self._store.put_user, updated)
        await self._record(caller, "iam.user.update", f"user:{record.id}", details=changes)
        if changes.get("status") == "disabled":
            await self._end_sessions(record.id, keep=None)
        await self._refresh_users([record.id])
        return updated.public()

    async def delete_user(self, caller: Principal | None, ref: str) -> None:
        """Delete a user with their memberships, bindings, sessions and tokens."""
        record = await self._user(ref)
        keys = await self._credential_keys(record.id)
        await self._run(self._store.delete_user, record.id)
        await self._record(
            caller, "iam.user.delete", f"user:{record.id}", details={"email": record.email}
        )
        self._notify([], keys)

    async def set_password(self, caller: Principal | None, ref: str, password: str) -> None:
        """Set a new password (policy-checked); ends every other session of the user."""
        record = await self._user(ref)
        self._policy.check(
            password, context=(record.email, record.email.split("@")[0], record.name)
        )
        password_hash = await self._run(self._hasher.hash, password)
        updated = replace(record, password_hash=password_hash, updated_at=self._clock.time())
        await self._run(self._store.put_user, updated)
        await self._record(caller, "auth.password.change", f"user:{record.id}")
        keep = caller.session_id if caller is not None and caller.id == record.id else None
        await self._end_sessions(record.id, keep=keep)

    # -- directory: groups --------------------------------------------------------------------

    async def create_group(self, caller: Principal | None, name: str, title: str = "") -> Group:
        """A new empty group; raises DuplicateGroup or InvalidName."""
        if not is_dns_label(name):
            raise InvalidName("group", name)
        group = await self._run(
            self._store.add_group, name, title.strip()[:255], self._clock.time()
        )
        await self._record(caller, "iam.group.create", f"group:{name}")
        return group

    async def list_groups(self) -> list[Group]:
        """Every group with its members, by name."""
        return await self._run(self._store.list_groups)

    async def get_group(self, name: str) -> Group:
        """The group; raises GroupNotFound."""
        return await self._run(self._store.get_group, name)

    async def delete_group(self, caller: Principal | None, name: str) -> None:
        """Delete the group and its role bindings; its members lose what it gave them."""
        group = await self._run(self._store.get_group, name)
        await self._run(self._store.delete_group, name)
        await self._record(caller, "iam.group.delete", f"group:{name}")
        await self._refresh_users(group.members)

    async def add_member(self, caller: Principal | None, group: str, user_ref: str) -> Group:
        """Put a user in a group (idempotent)."""
        return await self._membership(caller, group, user_ref, member=True)

    async def remove_member(self, caller: Principal | None, group: str, user_ref: str) -> Group:
        """Take a user out of a group (idempotent)."""
        return await self._membership(caller, group, user_ref, member=False)

    async def _membership(
        self, caller: Principal | None, group: str, user_ref: str, *, member: bool
    ) -> Group:
        user = await self._user(user_ref)
        result = await self._run(self._store.set_member, group, user.id, member)
        action = "iam.group.member.add" if member else "iam.group.member.remove"
        await self._record(caller, action, f"group:{group}", details={"user": user.id})
        await self._refresh_users([user.id])
        return result

    # -- roles --------------------------------------------------------------------------------

    async def _subject(self, subject: str) -> str:
        """The canonical subject (``user:<id>``) after checking that it exists."""
        kind, _, value = subject.partition(":")
        if not value:
            raise InvalidSubject(subject)
        if kind == "user":
            return f"user:{(await self._user(value)).id}"
        if kind == "group":
            await self._run(self._store.get_group, value)
            return subject
        if kind in ("service", "svc"):
            await self._run(self._store.get_service, value)
            return f"service:{value}"
        raise InvalidSubject(subject)

    async def grant(
        self, caller: Principal | None, role: str, subject: str, app: str | None = None
    ) -> RoleBinding:
        """Bind ``role`` to ``subject`` globally or in ``app`` (idempotent)."""
        app = app or None
        _check_role(role, app)
        binding = RoleBinding(role=role, subject=await self._subject(subject), app=app)
        created = await self._run(self._store.add_binding, binding, self._clock.time())
        if created:
            await self._record(
                caller, "iam.role.grant", binding.subject, details={"role": role, "app": app or ""}
            )
            await self._refresh_subject(binding.subject)
        return binding

    async def revoke_role(
        self, caller: Principal | None, role: str, subject: str, app: str | None = None
    ) -> None:
        """Remove a binding (idempotent)."""
        app = app or None
        canonical = await self._subject(subject)
        removed = await self._run(
            self._store.remove_binding, RoleBinding(role=role, subject=canonical, app=app)
        )
        if removed:
            await self._record(
                caller, "iam.role.revoke", canonical, details={"role": role, "app": app or ""}
            )
            await self._refresh_subject(canonical)

    async def list_bindings(
        self, *, subject: str | None = None, app: str | None = None
    ) -> list[RoleBinding]:
        """Bindings, optionally of one subject and/or in one app ("" = platform roles)."""
        subjects = None if subject is None else [await self._subject(subject)]
        return await self._run(_list_bindings, self._store, subjects, app)

    # -- service accounts ---------------------------------------------------------------------

    async def create_service_account(
        self, caller: Principal | None, name: str, title: str = ""
    ) -> Principal:
        """A new workload identity (``svc:<name>``); it signs in with API keys only."""
        if not is_dns_label(name):
            raise InvalidName("service account", name)
        account = ServiceAccount(
            name=name, title=title.strip()[:255], created_at=self._clock.time()
        )
        await self._run(self._store.add_service, account)
        await self._record(caller, "iam.service.create", f"service:{name}")
        return await self._service_principal(name, auth="token")

    async def list_service_accounts(self) -> list[ServiceAccount]:
        """Every service account, by name."""
        return await self._run(self._store.list_services)

    async def delete_service_account(self, caller: Principal | None, name: str) -> None:
        """Delete the account with its bindings and API keys."""
        await self._run(self._store.get_service, name)
        tokens = await self._run(self._store.list_tokens, f"service:{name}")
        await self._run(self._store.delete_service, name)
        await self._record(caller, "iam.service.delete", f"service:{name}")
        self._notify([], [t.lookup_hash for t in tokens if t.revoked_at is None])

    async def principal_of(self, ref: str) -> Principal:
        """The principal ``ref`` names: a user id or e-mail, or ``svc:<name>``.

        Raises UserDisabled for a disabled user: tokens issued before they were disabled
        (OAuth access and refresh tokens) must stop speaking for them.
        """
        if ref.startswith(("svc:", "service:")):
            return await self._service_principal(ref.partition(":")[2], auth="token")
        record = await self._user(ref)
        if record.status != "active":
            raise UserDisabled(ref)
        return await self._run(user_principal, self._store, record, "oidc", None, ())


def _check_role(role: str, app: str | None) -> None:
    if app is None:
        if role not in PLATFORM_ROLES:
            raise InvalidRole(role, f"platform roles are {', '.join(PLATFORM_ROLES)}")
    elif role not in APP_ROLES:
        raise InvalidRole(role, f"app roles are {', '.join(APP_ROLES)}")


def _list_bindings(
    store: IamStore, subjects: list[str] | None, app: str | None
) -> list[RoleBinding]:
    return store.list_bindings(subjects=subjects, app=app)
