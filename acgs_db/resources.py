"""Files shipped beside the code: SQL statements, Alembic migrations and alembic.ini.

In a source checkout they live at the top of the repository (``sql/``, ``migrations/``);
in an installed wheel they are packed inside the package (``_sql``, ``_migrations``).
SQL is loaded by name and never assembled from input.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _locate(packed: str, source: str) -> Path:
    inside = _PACKAGE / packed
    return inside if inside.exists() else _PACKAGE.parent / source


def sql_dir() -> Path:
    """Folder of the project's ``.sql`` files."""
    return _locate("_sql", "sql")


def migrations_dir() -> Path:
    """Folder of the Alembic environment."""
    return _locate("_migrations", "migrations")


def alembic_ini() -> Path:
    """The project's ``alembic.ini``."""
    return _locate("_alembic.ini", "alembic.ini")


@cache
def load_sql(name: str) -> str:
    """Text of ``sql/<name>.sql`` (``name`` may hold a sub-folder, e.g. ``queries/history``)."""
    path = sql_dir() / f"{name}.sql"
    if not path.resolve().is_relative_to(sql_dir().resolve()):
        raise ValueError(f"SQL name {name!r} leaves the sql folder")
    return path.read_text(encoding="utf-8").strip().rstrip(";")
