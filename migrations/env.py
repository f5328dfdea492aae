"""Alembic environment of acgs-db.

Online: connects with SQLAlchemy + psycopg 3 to ACGS_DATABASE_URL (or the embedded cluster, or
a connection handed in through ``config.attributes["connection"]``). Offline (``--sql``): renders
the SQL without touching any server. Either way every migration runs in one transaction with
``search_path`` set to the configured schema, so the DDL names no schema itself.

``alembic check`` (and autogenerate) compare the database with ``acgs_db.tables.metadata``,
leaving out what that metadata does not model: the partitions of partitioned tables (pg_partman
makes and drops them), pg_partman's schema and template tables, Alembic's own version table,
and the views (``info["is_view"]``; Alembic does not reflect views). Functions, triggers,
policies and grants are invisible to autogenerate; the schema snapshot test covers them.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any, Literal

from alembic import context
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool
from sqlalchemy.schema import SchemaItem

from acgs_db import tables
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
        target_metadata=tables.metadata,
        literal_binds=True,
        version_table_schema=SCHEMA,
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        _preamble()
        context.run_migrations()


# Tables of the schema that are partitions (pg_partman's monthly ones and the default) or that
# an extension owns; autogenerate must neither drop them nor compare them. (pg_partman's template
# tables live in its own schema, partman, which autogenerate does not look at either.)
_UNMODELLED_TABLES = text(
    """
    SELECT c.relname
      FROM pg_class c
      JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = :schema
       AND (c.relispartition
            OR EXISTS (SELECT 1 FROM pg_depend d
                        WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                          AND d.deptype = 'e'))
    """
)

NameType = Literal[
    "schema", "table", "column", "index", "unique_constraint", "foreign_key_constraint"
]
ObjectType = Literal[
    "schema", "table", "column", "index", "unique_constraint", "foreign_key_constraint"
]


def _filters(connection: Connection) -> dict[str, Any]:
    """``include_name``/``include_object`` hooks that leave out what the metadata does not model.

    The partitions are read when autogenerate first asks, inside the migration's transaction, so
    a plain upgrade runs no extra statement."""
    unmodelled: set[str] = set()
    version_table = context.config.get_main_option("version_table") or "alembic_version"

    def include_name(
        name: str | None, type_: NameType, parent_names: MutableMapping[Any, str | None]
    ) -> bool:
        if type_ == "schema":
            return name != "partman"
        if type_ == "table":
            if not unmodelled:
                found = connection.execute(_UNMODELLED_TABLES, {"schema": SCHEMA})
                unmodelled.update(row[0] for row in found)
                unmodelled.add(version_table)
            return name not in unmodelled
        return True

    def include_object(
        obj: SchemaItem, name: str | None, type_: ObjectType, reflected: bool, compare_to: Any
    ) -> bool:
        table = getattr(obj, "table", obj)
        return not (type_ in {"table", "index", "column"} and tables.is_view(table))

    return {"include_name": include_name, "include_object": include_object}


def _run_with(connection: Connection) -> None:
    context.configure(
        connection=connection,
        version_table_schema=SCHEMA,
        target_metadata=tables.metadata,
        compare_type=True,
        compare_server_default=True,
        **_filters(connection),
    )
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
