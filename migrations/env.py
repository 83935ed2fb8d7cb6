"""Alembic environment. The URL comes from ``-x url=...``, else the config's ``sqlalchemy.url``
(set by ``store.migrate``), else ``DATABASE_URL`` via store settings. SQLite runs in batch mode
with foreign keys off (batch mode rebuilds tables; cascades must not fire meanwhile)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from store.db import is_sqlite, make_engine, normalize_url
from store.models import Base
from store.settings import get_settings

config = context.config
target_metadata = Base.metadata


def database_url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url")
    url = url or config.get_main_option("sqlalchemy.url") or get_settings().database_url
    return normalize_url(url)


def configure(connection: Connection | None = None, url: str | None = None) -> None:
    sqlite = (
        is_sqlite(url) if url else connection is not None and connection.dialect.name == "sqlite"
    )
    context.configure(
        connection=connection,
        url=url,
        target_metadata=target_metadata,
        render_as_batch=sqlite,
        compare_type=True,
        literal_binds=url is not None,
    )


def run_offline() -> None:
    configure(url=database_url())
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:  # handed over by a caller (tests)
        configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(database_url(), sqlite_foreign_keys=False)
    try:
        with engine.connect() as connection:
            configure(connection=connection)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
