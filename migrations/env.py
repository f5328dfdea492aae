"""Alembic environment of acgs-db.

Online: connects with SQLAlchemy + psycopg 3 to ACGS_DATABASE_URL (or the embedded cluster, or
a connection handed in through ``config.attributes["connection"]``). Offline (``--sql``): renders
the SQL without touching any server. Either way every migration runs in one transaction with
``search_path`` set to the configured schema, so the DDL names no schema itself.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

from acgs_db.devdb import database_url
from acgs_db.schema import sqlalchemy_url
from acgs_db.settings import Settings

config = context.config
settings = Settings.from_env()
SCHEMA = settings.schema  # validated as a plain identifier by Settings


def _preamble() -> None:
    if SCHEMA != "public":
        context.execute(f'CREATE SCHEMA IF NOT EXISTS "{SCHEMA}"')
    context.execute(f'SET LOCAL search_path TO "{SCHEMA}", pg_temp')


def run_offline() -> None:
    context.configure(
        url="postgresql+psycopg://",
        literal_binds=True,
        version_table_schema=SCHEMA,
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        _preamble()
        context.run_migrations()


def _run_with(connection: Connection) -> None:
    context.configure(connection=connection, version_table_schema=SCHEMA)
    with context.begin_transaction():
        _preamble()
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_with(connection)
        return
    url = config.get_main_option("sqlalchemy.url") or database_url(settings)
    engine = create_engine(sqlalchemy_url(url), poolclass=NullPool)
    with engine.connect() as conn:
        _run_with(conn)
        conn.commit()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
