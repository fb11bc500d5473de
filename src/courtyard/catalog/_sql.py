"""The catalog in the platform database (SQLite or PostgreSQL), safe across threads and processes.

Fleet-wide uniqueness rests on the primary keys of ``routes`` and ``capabilities``: a register
that loses a race hits an IntegrityError, rolls back whole, and is told who holds the claim.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Row, delete, func, insert, select, tuple_, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError

from courtyard.catalog._errors import AppNotFound, CatalogError, RevisionNotFound
from courtyard.catalog._manifest import Manifest
from courtyard.catalog._models import (
    App,
    DesiredState,
    Registration,
    Revision,
    make_app,
    route_keys,
)
from courtyard.catalog._store import find_conflict
from courtyard.store import (
    Database,
    apps_table,
    capabilities_table,
    revisions_table,
    routes_table,
)

_T = TypeVar("_T")

# A transaction that lost a race on the same app (both inserting revision n + 1) is retried.
_ATTEMPTS = 8
# PostgreSQL serialization failure and deadlock: the transaction did nothing; try again.
_TRANSIENT = {"40001", "40P01"}


class SqlCatalogStore:
    """A :class:`CatalogStore` on a :class:`courtyard.store.Database`."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def register(
        self, manifest: Manifest, digest: str, bundle_digest: str | None, now: float
    ) -> Registration:
        def work(connection: Connection) -> Registration:
            return self._register(connection, manifest, digest, bundle_digest, now)

        return self._write(manifest.name, work, lambda _: manifest)

    def get(self, name: str) -> App:
        with self._db.read() as connection:
            return self._app(connection, name)

    def list(self) -> builtins.list[App]:
        query = (
            select(apps_table, revisions_table.c.manifest)
            .join(
                revisions_table,
                (revisions_table.c.app == apps_table.c.name)
                & (revisions_table.c.number == apps_table.c.current_revision),
            )
            .order_by(apps_table.c.name)
        )
        with self._db.read() as connection:
            rows = connection.execute(query)
            return [_app_from(row, Manifest.from_document(row.manifest)) for row in rows]

    def revisions(self, name: str) -> builtins.list[Revision]:
        query = (
            select(revisions_table)
            .where(revisions_table.c.app == name)
            .order_by(revisions_table.c.number)
        )
        with self._db.read() as connection:
            self._app_row(connection, name)
            return [_revision_from(row) for row in connection.execute(query)]

    def revision(self, name: str, number: int) -> Revision:
        with self._db.read() as connection:
            self._app_row(connection, name)
            return _revision_from(self._revision_row(connection, name, number))

    def set_current(self, name: str, number: int, now: float) -> App:
        def work(connection: Connection) -> App:
            row = self._app_row(connection, name, lock=True)
            target = self._revision_row(connection, name, number)
            manifest = Manifest.from_document(target.manifest)
            if number == row.current_revision:
                return _app_from(row, manifest)
            self._check_claims(connection, manifest)
            connection.execute(
                update(apps_table)
                .where(apps_table.c.name == name)
                .values({**_columns(manifest), "current_revision": number, "updated_at": now})
            )
            self._claim(connection, manifest)
            return self._app(connection, name)

        def manifest_of(connection: Connection) -> Manifest:
            return Manifest.from_document(self._revision_row(connection, name, number).manifest)

        return self._write(name, work, manifest_of)

    def set_desired(self, name: str, state: DesiredState, now: float) -> App:
        with self._db.begin() as connection:
            result = connection.execute(
                update(apps_table)
                .where(apps_table.c.name == name)
                .values(desired_state=state, updated_at=now)
            )
            if result.rowcount == 0:
                raise AppNotFound(name)
            return self._app(connection, name)

    def remove(self, name: str) -> None:
        with self._db.begin() as connection:
            self._app_row(connection, name, lock=True)
            for table in (routes_table, capabilities_table, revisions_table):
                connection.execute(delete(table).where(table.c.app == name))
            connection.execute(delete(apps_table).where(apps_table.c.name == name))

    def _write(
        self,
        name: str,
        work: Callable[[Connection], _T],
        manifest: Callable[[Connection], Manifest],
    ) -> _T:
        """Run ``work`` in a write transaction, retrying lost races on ``name`` itself.

        An IntegrityError means a concurrent transaction committed a conflicting row; if that
        is another app's claim, say so, else (both wrote app ``name``) try again.
        """
        for _ in range(_ATTEMPTS):
            try:
                with self._db.begin() as connection:
                    return work(connection)
            except IntegrityError:
                with self._db.read() as connection:
                    conflict = self._conflict(connection, manifest(connection))
                if conflict is not None:
                    raise conflict from None
            except DBAPIError as exc:
                if getattr(exc.orig, "sqlstate", None) not in _TRANSIENT:
                    raise
        raise CatalogError(f"could not change app {name!r}: too many concurrent changes; retry")

    def _register(
        self,
        connection: Connection,
        manifest: Manifest,
        digest: str,
        bundle_digest: str | None,
        now: float,
    ) -> Registration:
        name = manifest.name
        row = self._app_row(connection, name, lock=True, missing_ok=True)
        if row is not None:
            current = self._revision_row(connection, name, row.current_revision)
            if current.digest == digest:
                revision = _revision_from(current)
                return Registration(_app_from(row, revision.manifest), revision, created=False)
        self._check_claims(connection, manifest)
        if row is None:
            number = 1
            connection.execute(
                insert(apps_table).values(
                    {
                        **_columns(manifest),
                        "name": name,
                        "current_revision": number,
                        "desired_state": "running",
                        "created_at": now,
                        "updated_at": now,
                    }
                )
            )
        else:
            latest = select(func.max(revisions_table.c.number)).where(revisions_table.c.app == name)
            number = int(connection.execute(latest).scalar_one()) + 1
            connection.execute(
                update(apps_table)
                .where(apps_table.c.name == name)
                .values({**_columns(manifest), "current_revision": number, "updated_at": now})
            )
        connection.execute(
            insert(revisions_table).values(
                app=name,
                number=number,
                digest=digest,
                bundle_digest=bundle_digest,
                manifest=manifest.document(),
                created_at=now,
            )
        )
        self._claim(connection, manifest)
        revision = Revision(name, number, digest, bundle_digest, manifest, now)
        return Registration(self._app(connection, name), revision, created=True)

    def _check_claims(self, connection: Connection, manifest: Manifest) -> None:
        conflict = self._conflict(connection, manifest)
        if conflict is not None:
            raise conflict

    def _conflict(self, connection: Connection, manifest: Manifest) -> CatalogError | None:
        # Capabilities are read before routes: under READ COMMITTED each statement sees the
        # commits made before it, so a rival committing in between is seen by the route query
        # too, and the answer is RouteTaken whichever moment the rival committed.
        capabilities = {}
        if manifest.spec.provides:
            query = select(capabilities_table).where(
                capabilities_table.c.name.in_(manifest.spec.provides)
            )
            capabilities = {row.name: row.app for row in connection.execute(query)}
        keys = route_keys(manifest)
        routes = {}
        if keys:
            query = select(routes_table).where(
                tuple_(routes_table.c.host, routes_table.c.path).in_(keys)
            )
            routes = {(row.host, row.path): row.app for row in connection.execute(query)}
        return find_conflict(manifest.name, manifest, routes, capabilities)

    def _claim(self, connection: Connection, manifest: Manifest) -> None:
        """Replace the app's routes and capabilities; sorted, so concurrent writers lock
        rows in one order and cannot deadlock each other."""
        name = manifest.name
        connection.execute(delete(routes_table).where(routes_table.c.app == name))
        connection.execute(delete(capabilities_table).where(capabilities_table.c.app == name))
        routes = [{"host": h, "path": p, "app": name} for h, p in sorted(route_keys(manifest))]
        if routes:
            connection.execute(insert(routes_table), routes)
        provides = [{"name": c, "app": name} for c in sorted(manifest.spec.provides)]
        if provides:
            connection.execute(insert(capabilities_table), provides)

    def _app(self, connection: Connection, name: str) -> App:
        row = self._app_row(connection, name)
        current = self._revision_row(connection, name, row.current_revision)
        return _app_from(row, Manifest.from_document(current.manifest))

    def _app_row(
        self, connection: Connection, name: str, *, lock: bool = False, missing_ok: bool = False
    ) -> Any:
        query = select(apps_table).where(apps_table.c.name == name)
        row = connection.execute(query.with_for_update() if lock else query).first()
        if row is None and not missing_ok:
            raise AppNotFound(name)
        return row

    def _revision_row(self, connection: Connection, name: str, number: int) -> Row[Any]:
        query = select(revisions_table).where(
            (revisions_table.c.app == name) & (revisions_table.c.number == number)
        )
        row = connection.execute(query).first()
        if row is None:
            raise RevisionNotFound(name, number)
        return row


def _columns(manifest: Manifest) -> dict[str, Any]:
    """The app columns that mirror its current manifest (for queries by owner or stage)."""
    return {"kind": manifest.kind, "owner": manifest.metadata.owner, "stage": manifest.spec.stage}


def _app_from(row: Any, manifest: Manifest) -> App:
    return make_app(
        manifest,
        current_revision=row.current_revision,
        desired_state=row.desired_state,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _revision_from(row: Any) -> Revision:
    return Revision(
        app=row.app,
        number=row.number,
        digest=row.digest,
        bundle_digest=row.bundle_digest,
        manifest=Manifest.from_document(row.manifest),
        created_at=row.created_at,
    )
