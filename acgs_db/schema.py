"""Schema management: Alembic migrations run from Python, and what the schema is made of."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from acgs_db.resources import alembic_ini, migrations_dir

CONSTITUTIONAL_HASH = "cdd01ef066bc6cf2"
"""The constitution every stored validation was checked against (enforced by a CHECK)."""

VALIDATIONS_TABLE = "constitutional_validations"
CACHE_TABLE = "decision_validation_cache"
METRICS_VIEW = "tenant_constitutional_metrics_24h"


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


def head_revision() -> str:
    """The newest revision in ``migrations/versions``."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


REQUIRE_EXTENSION_SQL = """
DO $check$
DECLARE
    extension text := current_setting('acgs.required_extension');
    package text := 'postgresql-' || (current_setting('server_version_num')::int / 10000) || '-'
                    || CASE extension WHEN 'pg_partman' THEN 'partman'
                                      WHEN 'pg_cron' THEN 'cron'
                                      ELSE extension END;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = extension) THEN
        RAISE EXCEPTION USING
            MESSAGE = 'the PostgreSQL extension ' || extension
                      || ' is not installed on this server',
            HINT = 'Install the Debian package ' || package || ' (apt-get install '
                         || package || ') and run the migration again.';
    END IF;
END
$check$"""
"""Stops a migration, naming the Debian package to install, when the extension named by the
transaction-local setting ``acgs.required_extension`` is missing. (No ``%`` inside: Alembic's
offline rendering would double it.)"""
