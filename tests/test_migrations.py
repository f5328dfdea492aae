"""Alembic migrations: the round trips, offline rendering, and the missing-extension message.

The round trips compare definitions read from the catalog (tests/catalog.py: columns,
constraints, index definitions, function bodies, view queries, triggers, policies, grants,
pg_partman's configuration), so a downgrade that restores a wrong body or grant fails.
"""

from __future__ import annotations

import subprocess
import sys

import psycopg
import pytest
from alembic.script import ScriptDirectory
from catalog import definitions, difference

from acgs_db.resources import alembic_ini, load_sql
from acgs_db.tooling import schema


def _revisions() -> list[str]:
    """Every revision, oldest first."""
    scripts = ScriptDirectory.from_config(schema.alembic_config())
    return [s.revision for s in reversed(list(scripts.walk_revisions()))]


def _schema(url: str) -> dict[str, list[str]]:
    """The catalog's definitions, without Alembic's version table (a downgrade to base keeps it)."""
    return {
        kind: [line for line in lines if "alembic_version" not in line]
        for kind, lines in definitions(url).items()
    }


def _same(expected: dict[str, list[str]], found: dict[str, list[str]], step: str) -> None:
    assert found == expected, f"{step} changed these definitions:\n{difference(expected, found)}"


def test_upgrade_downgrade_upgrade_round_trip(fresh_database: str) -> None:
    empty = _schema(fresh_database)
    schema.upgrade(fresh_database)
    created = _schema(fresh_database)
    assert "CREATE TRIGGER constitutional_validations_rollup_insert" in "".join(created["triggers"])
    assert any(line.startswith("pg_partman ") for line in created["extensions"])
    assert len(created["policies"]) == 6 and len(created["functions"]) >= 10

    schema.downgrade(fresh_database, "base")
    _same(empty, _schema(fresh_database), "upgrade head, downgrade base")

    schema.upgrade(fresh_database)
    _same(created, _schema(fresh_database), "downgrade base, upgrade head")
    with psycopg.connect(fresh_database) as conn:
        rows = conn.execute("SELECT count(*) FROM partman.part_config").fetchone()
        assert rows == (1,)


def test_every_revision_downgrades_to_its_predecessor_and_upgrades_again(
    fresh_database: str,
) -> None:
    previous, before = "base", _schema(fresh_database)
    for revision in _revisions():
        schema.upgrade(fresh_database, revision)
        made = _schema(fresh_database)
        assert made != before, f"{revision} changed nothing"
        schema.downgrade(fresh_database, previous)
        _same(before, _schema(fresh_database), f"downgrade {revision} -> {previous}")
        schema.upgrade(fresh_database, revision)
        _same(made, _schema(fresh_database), f"upgrade {previous} -> {revision} again")
        previous, before = revision, made


def test_the_definitions_see_a_changed_function_body(migrated_database: str) -> None:
    before = _schema(migrated_database)
    with psycopg.connect(migrated_database, autocommit=True) as conn:
        conn.execute(
            "CREATE OR REPLACE FUNCTION rollup_width() RETURNS interval"
            " LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURN interval '2 hours'"
        )
        conn.execute("REVOKE SELECT ON validation_rollup FROM acgs_reader")
    changed = difference(before, _schema(migrated_database))
    assert "functions: + CREATE OR REPLACE FUNCTION public.rollup_width()" in changed
    assert "'02:00:00'::interval" in changed
    assert "relations: - validation_rollup " in changed and "acgs_reader=r/" in changed


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
            conn.execute(load_sql("schema/require_extension"))
    diag = caught.value.diag
    assert diag.message_primary is not None
    assert "acgs_no_such_extension is not installed" in diag.message_primary
    assert diag.message_hint is not None
    assert "postgresql-15-acgs_no_such_extension" in diag.message_hint
