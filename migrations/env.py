"""Alembic environment of acgs-db.

Online: connects with SQLAlchemy + psycopg 3 to ACGS_DATABASE_URL (or the embedded cluster, or
a connection handed in through ``config.attributes["connection"]``). Offline (``--sql``): renders
the SQL without touching any server.

Every migration runs in a transaction of its own (``transaction_per_migration``) that starts
with a preamble: ``search_path`` set to the configured schema (so the DDL names no schema
itself) and ``lock_timeout`` set to ACGS_LOCK_TIMEOUT (``SET LOCAL``, rendered offline too, so
a DBA applying the ``--sql`` script gets it). A step that needs a strong lock behind a
long-running reader thus gives up after that long instead of queueing with every later reader
and writer behind it. Online, a migration that failed on the lock timeout (SQLSTATE 55P03) is
rolled back and tried again, up to ACGS_LOCK_RETRIES times with exponential backoff and jitter;
the revisions committed before it stay, so a retry resumes at the failed one. The last failure
raises :class:`acgs_db.locks.LockTimeoutError` naming the sessions that hold locks on the
schema's tables (read from a separate connection), with their pid, application_name, state,
transaction age, lock mode and relation. A handed-in connection already inside a transaction is
the caller's: it gets the preamble and the message, not the retries.
``alembic check`` (and autogenerate) compare the database with ``acgs_db.tables.metadata``,
leaving out what that metadata does not model: the partitions of partitioned tables (pg_partman
makes and drops them), pg_partman's schema and template tables, Alembic's own version table,
and the views (``info["is_view"]``; Alembic does not reflect views). Functions, triggers,
policies and grants are invisible to autogenerate; the schema snapshot test covers them.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any, Literal, ParamSpec, TypeVar

from alembic import context
from sqlalchemy import create_engine, text
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool
from sqlalchemy.schema import Column, Index, SchemaItem, Table

from acgs_db import tables
from acgs_db.locks import (
    LockTimeoutError,
    backoff,
    find_blockers,
    is_lock_timeout,
    lock_failure_message,
)
from acgs_db.settings import Settings
from acgs_db.tooling.devdb import database_url
from acgs_db.tooling.schema import sqlalchemy_url

config = context.config
settings = Settings.from_env()
SCHEMA = settings.schema  # validated as a plain identifier by Settings
LOCK_TIMEOUT_MS = max(1, round(settings.lock_timeout * 1000))  # 0 < lock_timeout <= 60 s
log = logging.getLogger("acgs_db.migrations")
_running: list[str] = []  # the revision whose step runs now, for the error message
P = ParamSpec("P")
R = TypeVar("R")


def _preamble() -> None:
    context.execute(f'SET LOCAL search_path TO "{SCHEMA}", pg_temp')
    context.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT_MS}ms'")


def _with_preamble(step: Callable[P, R], label: str) -> Callable[P, R]:
    @functools.wraps(step)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        _running[:] = [label]
        _preamble()
        return step(*args, **kwargs)

    return run


def _every_step_starts_with_the_preamble() -> None:
    """Wrap each revision's upgrade() and downgrade(): Alembic opens the migration's
    transaction, then calls it, so the preamble is the first thing in every transaction."""
    for script in context.script.walk_revisions():
        module = script.module
        for name in ("upgrade", "downgrade"):
            original = getattr(module, f"_acgs_{name}", None) or getattr(module, name)
            setattr(module, f"_acgs_{name}", original)
            setattr(module, name, _with_preamble(original, f"{script.revision} ({name})"))


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
        if type_ not in {"table", "index", "column"}:
            return True
        table = obj.table if isinstance(obj, Column | Index) else obj
        return not (isinstance(table, Table) and tables.is_view(table))

    return {"include_name": include_name, "include_object": include_object}


def run_offline() -> None:
    context.configure(
        url="postgresql+psycopg://",
        target_metadata=tables.metadata,
        literal_binds=True,
        version_table_schema=SCHEMA,
        transaction_per_migration=True,
    )
    if SCHEMA != "public":
        context.execute(f'CREATE SCHEMA IF NOT EXISTS "{SCHEMA}"')
    with context.begin_transaction():
        context.run_migrations()


def _migrate(connection: Connection, external: bool) -> None:
    if SCHEMA != "public":
        connection.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{SCHEMA}"')
        if not external:
            connection.commit()
    # Reflection names xid8 (the ledger's transaction ids) as the metadata does; this
    # engine's dialect only (the class's mapping is left alone), so that `alembic check` compares
    # the column instead of warning.
    dialect = connection.dialect
    if isinstance(dialect, PGDialect):
        dialect.ischema_names = {**dialect.ischema_names, "xid8": tables.XID8}
    context.configure(
        connection=connection,
        version_table_schema=SCHEMA,
        transaction_per_migration=True,
        target_metadata=tables.metadata,
        compare_type=True,
        compare_server_default=True,
        **_filters(connection),
    )
    with context.begin_transaction():
        context.run_migrations()
    if not external:
        connection.commit()


def _lock_failure(engine: Engine, attempts: int, exc: BaseException) -> LockTimeoutError:
    with engine.connect() as other:
        raw = other.connection.driver_connection
        blockers = find_blockers(raw, SCHEMA) if raw is not None else []
        other.rollback()
    what = f"migration {_running[0]}" if _running else "migration"
    message = lock_failure_message(what, attempts, settings.lock_timeout, blockers)
    return LockTimeoutError(message, blockers)


def _run_with_retries(connect: Callable[[], Any], engine: Engine) -> None:
    for attempt in range(settings.lock_retries + 1):
        with connect() as connection:
            external = connection.in_transaction()
            try:
                _migrate(connection, external)
                return
            except DBAPIError as exc:
                if not is_lock_timeout(exc):
                    raise
                if external or attempt == settings.lock_retries:
                    raise _lock_failure(engine, attempt + 1, exc) from exc
                if connection.in_transaction():
                    connection.rollback()
        delay = backoff(attempt)
        log.warning(
            "migration %s waited %g s for a lock (attempt %d of %d); retrying in %.2f s",
            _running[0] if _running else "?",
            settings.lock_timeout,
            attempt + 1,
            settings.lock_retries + 1,
            delay,
        )
        time.sleep(delay)


@contextmanager
def _borrowed(connection: Connection) -> Iterator[Connection]:
    yield connection


def run_online() -> None:
    _every_step_starts_with_the_preamble()
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_with_retries(lambda: _borrowed(connection), connection.engine)
        return
    url = config.get_main_option("sqlalchemy.url") or database_url(settings)
    engine = create_engine(sqlalchemy_url(url), poolclass=NullPool)
    try:
        _run_with_retries(engine.connect, engine)
    finally:
        engine.dispose()


if context.is_offline_mode():
    _every_step_starts_with_the_preamble()
    run_offline()
else:
    run_online()
