"""Alembic's entry point for the Studio's database.

`sql_store.upgrade` passes an open connection in `config.attributes["connection"]` (the store's
own engine, with its SQLite settings); otherwise the URL comes from the `sqlalchemy.url`
option, as with the `alembic` command line.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine, pool

from segue.studio.schema import metadata


def _configure(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    """Writes the SQL instead of running it (`alembic upgrade --sql`)."""
    context.configure(url=context.config.get_main_option("sqlalchemy.url"),
                      target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = context.config.attributes.get("connection")
    if isinstance(connection, Connection):
        _configure(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise ValueError("set sqlalchemy.url (or pass a connection) to migrate the Studio")
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.begin() as connection:
            _configure(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
