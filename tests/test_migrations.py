"""Alembic migrations: the round trip, offline rendering, and the missing-extension message."""

from __future__ import annotations

import subprocess
import sys

import psycopg
import pytest

from acgs_db import schema
from acgs_db.resources import alembic_ini


def _objects(url: str) -> dict[str, list[str]]:
    with psycopg.connect(url) as conn:
        return {
            "relations": [
                r[0]
                for r in conn.execute(
                    "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                    " WHERE nspname IN ('public', 'partman') AND relname <> 'alembic_version'"
                    " AND relname NOT LIKE 'alembic_version%' ORDER BY 1"
                ).fetchall()
            ],
            "functions": [
                r[0]
                for r in conn.execute(
                    "SELECT proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
                    " WHERE nspname IN ('public', 'partman') ORDER BY 1"
                ).fetchall()
            ],
            "extensions": [
                r[0]
                for r in conn.execute(
                    "SELECT extname FROM pg_extension WHERE extname <> 'plpgsql'"
                ).fetchall()
            ],
        }


def test_upgrade_downgrade_upgrade_round_trip(fresh_database: str) -> None:
    schema.upgrade(fresh_database)
    created = _objects(fresh_database)
    assert "constitutional_validations" in created["relations"]
    assert "pg_partman" in created["extensions"]

    schema.downgrade(fresh_database, "base")
    assert _objects(fresh_database) == {"relations": [], "functions": [], "extensions": []}

    schema.upgrade(fresh_database)
    assert _objects(fresh_database) == created
    with psycopg.connect(fresh_database) as conn:
        rows = conn.execute("SELECT count(*) FROM partman.part_config").fetchone()
        assert rows == (1,)


def test_downgrade_removes_partman_configuration_but_keeps_other_users(
    migrated_database: str,
) -> None:
    with psycopg.connect(migrated_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE other_log (at timestamptz NOT NULL) PARTITION BY RANGE (at)")
        conn.execute("SELECT partman.create_parent('public.other_log', 'at', 'native', '1 month')")
    schema.downgrade(migrated_database, "base")
    with psycopg.connect(migrated_database, autocommit=True) as conn:
        parents = [r[0] for r in conn.execute("SELECT parent_table FROM partman.part_config")]
        assert parents == ["public.other_log"]
        assert conn.execute(
            "SELECT to_regclass('partman.template_public_constitutional_validations')"
        ).fetchone() == (None,)
        # maintenance still runs: nothing of the dropped table is left to trip it
        conn.execute("CALL partman.run_maintenance_proc()")


def test_offline_sql_renders_and_applies(fresh_database: str) -> None:
    rendered = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(alembic_ini()), "upgrade", "head", "--sql"],
        check=True,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "ACGS_DATABASE_URL": "postgresql://nobody@invalid/none"},
    ).stdout
    assert "CREATE TABLE constitutional_validations" in rendered
    assert "partman.create_parent" in rendered
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        conn.execute(rendered)
        version = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        assert version == (schema.head_revision(),)
        count = conn.execute(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = "
            "'constitutional_validations'::regclass"
        ).fetchone()
        assert count is not None and count[0] >= 5


def test_missing_extension_names_the_debian_package(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute("SET LOCAL acgs.required_extension = 'acgs_no_such_extension'")
        with pytest.raises(psycopg.errors.RaiseException) as caught:
            conn.execute(schema.REQUIRE_EXTENSION_SQL)
    diag = caught.value.diag
    assert diag.message_primary is not None
    assert "acgs_no_such_extension is not installed" in diag.message_primary
    assert diag.message_hint is not None
    assert "postgresql-15-acgs_no_such_extension" in diag.message_hint
