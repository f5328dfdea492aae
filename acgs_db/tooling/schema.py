"""Schema management: Alembic migrations run from Python, and what the schema is made of."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from psycopg import sql

from acgs_db.errors import ConfigurationError
from acgs_db.resources import alembic_ini, load_sql, migrations_dir
from acgs_db.settings import Settings


def sqlalchemy_url(url: str) -> str:
    """Turn a libpq URL (``postgresql://…``) into SQLAlchemy's psycopg 3 form."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    raise ValueError("expected a postgresql:// URL")


def alembic_config(url: str | None = None) -> Config:
    """Alembic configuration of the project, optionally pinned to one database URL."""
    config = Config(str(alembic_ini()))
    config.set_main_option("script_location", str(migrations_dir()))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` (``alembic upgrade``)."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    """Revert migrations down to ``revision`` (``alembic downgrade``)."""
    command.downgrade(alembic_config(url), revision)


ROWS_COUNTED = 10_000
"""Rows of a table counted exactly by :func:`downgrade_plan`; beyond, the planner's estimate."""


@dataclass(frozen=True, slots=True)
class TableRows:
    """A table a downgrade would drop, and its rows: ``rows`` is exact when ``exact``, else
    the planner's estimate (``pg_class.reltuples`` over its partitions), and then above
    :data:`ROWS_COUNTED`."""

    table: str
    rows: int
    exact: bool

    def describe(self) -> str:
        if self.exact:
            return f"{self.table} ({self.rows} rows, exact)"
        return f"{self.table} (about {self.rows} rows, estimated; more than {ROWS_COUNTED})"


@dataclass(frozen=True, slots=True)
class DowngradePlan:
    """What ``alembic downgrade <target>`` would undo, and the tables it would drop that hold
    rows (``DROPS_ON_DOWNGRADE`` of each revision undone; tables absent or empty are left out)."""

    current: str | None
    target: str
    revisions: tuple[str, ...]
    tables_with_rows: tuple[TableRows, ...]


def downgrade_plan(url: str, revision: str, settings: Settings | None = None) -> DowngradePlan:
    """The revisions between the database's current one and ``revision`` (anything Alembic
    accepts as a downgrade target: a revision, ``base``, ``-1``), and the tables their
    downgrades drop that hold rows.

    Table names come from the migration files (``DROPS_ON_DOWNGRADE``), never from input, and
    are quoted with :class:`psycopg.sql.Identifier`; each is probed with ``SELECT EXISTS``
    and, when it holds rows, counted exactly up to :data:`ROWS_COUNTED`.
    """
    settings = settings or Settings.from_env()
    scripts = ScriptDirectory.from_config(alembic_config())
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(load_sql("downgrade/search_path"), (f'"{settings.schema}"',))
        current = None
        if _exists(conn, "alembic_version"):
            row = conn.execute(load_sql("downgrade/current_revision")).fetchone()
            current = None if row is None else str(row[0])
        try:
            undone = [s for s in scripts.iterate_revisions(current, revision) if s is not None]
        except CommandError as exc:
            raise ConfigurationError(
                f"cannot downgrade from {current or 'base'} to {revision!r}: {exc}"
            ) from None
        tables: list[TableRows] = []
        for script in undone:
            for table in getattr(script.module, "DROPS_ON_DOWNGRADE", ()):
                if _exists(conn, table) and _has_rows(conn, table):
                    tables.append(_rows(conn, table))
    return DowngradePlan(current, revision, tuple(s.revision for s in undone), tuple(tables))


def _exists(conn: psycopg.Connection[tuple[object, ...]], table: str) -> bool:
    row = conn.execute(load_sql("downgrade/table_exists"), {"table": table}).fetchone()
    return bool(row and row[0])


def _has_rows(conn: psycopg.Connection[tuple[object, ...]], table: str) -> bool:
    query = sql.SQL(load_sql("downgrade/table_has_rows")).format(table=sql.Identifier(table))
    row = conn.execute(query).fetchone()
    return bool(row and row[0])


def _rows(conn: psycopg.Connection[tuple[object, ...]], table: str) -> TableRows:
    query = sql.SQL(load_sql("downgrade/table_rows")).format(table=sql.Identifier(table))
    row = conn.execute(query, {"cap": ROWS_COUNTED, "table_name": table}).fetchone()
    assert row is not None
    counted, estimated = int(str(row[0])), int(str(row[1]))
    if counted <= ROWS_COUNTED:
        return TableRows(table, counted, exact=True)
    return TableRows(table, max(estimated, counted), exact=False)


def head_revision() -> str:
    """The newest revision in ``migrations/versions``."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head
