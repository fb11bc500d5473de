"""Alembic environment: migrate the connection :class:`courtyard.store.Database` hands over.

Courtyard never runs Alembic from an ini file; ``Database.open`` opens a transaction (locked
against concurrent openers), puts its connection in ``config.attributes`` and upgrades to head.
"""

from alembic import context
from sqlalchemy.engine import Connection

from courtyard.store._schema import metadata


def run_migrations() -> None:
    """Run pending migrations inside the caller's transaction (offline mode is not supported)."""
    connection = context.config.attributes.get("connection")
    if not isinstance(connection, Connection):
        raise RuntimeError("courtyard migrations run only through courtyard.store.Database.open")
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
