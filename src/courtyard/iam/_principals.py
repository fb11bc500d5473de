"""Who a user or service account is right now: groups and roles resolved from the store.

Synchronous (run in worker threads): each function reads the store directly.
"""

from __future__ import annotations

from courtyard.iam._models import Principal, UserRecord
from courtyard.iam._sessions import roles_from
from courtyard.iam._store import IamStore


def user_principal(
    store: IamStore,
    record: UserRecord,
    auth: str,
    session_id: str | None,
    scopes: tuple[str, ...],
) -> Principal:
    groups = tuple(store.groups_of(record.id))
    subjects = [f"user:{record.id}", *(f"group:{g}" for g in groups)]
    roles, app_roles = roles_from(store.list_bindings(subjects=subjects))
    return Principal(
        kind="user",
        id=record.id,
        email=record.email,
        name=record.name,
        groups=groups,
        roles=roles,
        app_roles=app_roles,
        auth=auth,
        session_id=session_id,
        scopes=scopes,
    )


def service_principal(store: IamStore, name: str, auth: str, scopes: tuple[str, ...]) -> Principal:
    account = store.get_service(name)
    roles, app_roles = roles_from(store.list_bindings(subjects=[f"service:{name}"]))
    return Principal(
        kind="service",
        id=f"svc:{account.name}",
        email="",
        name=account.title or account.name,
        groups=(),
        roles=roles,
        app_roles=app_roles,
        auth=auth,
        session_id=None,
        scopes=scopes,
    )
