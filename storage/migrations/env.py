"""Alembic environment for the flushsweep metadata schema.

Batch mode everywhere (SQLite cannot ALTER much), our own version table so an
Optuna study can share the database, and only ``fs_`` tables are compared, so
autogenerate never proposes dropping someone else's tables (nor adding a
PostgreSQL-only index to SQLite).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from storage._models import TABLE_PREFIX, VERSION_TABLE, Base, comparable_on

config = context.config
target_metadata = Base.metadata


def _include_name(name: str | None, type_: str, _parents: object) -> bool:
    return type_ != "table" or (name or "").startswith(TABLE_PREFIX)


_OPTIONS = dict(
    target_metadata=target_metadata,
    render_as_batch=True,
    version_table=VERSION_TABLE,
    include_name=_include_name,
    compare_type=True,
)


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True, **_OPTIONS)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:  # storage opens the store and hands us its connection
        context.configure(connection=connection, include_object=comparable_on(connection.dialect.name), **_OPTIONS)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url"), poolclass=NullPool)
    with engine.connect() as conn:
        context.configure(connection=conn, include_object=comparable_on(conn.dialect.name), **_OPTIONS)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
