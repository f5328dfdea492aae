"""Partition maintenance: premade partitions, rows stranded in the default, retention, psql.

Every test changes partitions, so each has a database of its own.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import psycopg
import pytest

from acgs_db.errors import SchemaNotReadyError
from acgs_db.partitions import MaintenanceError, maintain
from acgs_db.settings import Settings
from acgs_db.tooling import schema

PARENT = "public.constitutional_validations"
SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "partman-maintenance.sh"
VIOLATION = "updated partition constraint for default partition"


@pytest.fixture
def store(migrated_database: str) -> str:
    """A database of its own, migrated to head."""
    return migrated_database


@pytest.fixture
def db(store: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(store, autocommit=True) as conn:
        yield conn


def _settings() -> Settings:
    return Settings.from_env({})


def _insert(conn: psycopg.Connection, tenant: str, rows: int, age: str) -> None:
    """``rows`` validations dated ``now() - age`` (a negative age is the future)."""
    conn.execute(
        "INSERT INTO constitutional_validations (tenant_id, decision_id, compliance_score,"
        " validation_details, processing_time_ms, created_at)"
        " SELECT %s, 'd-' || i, (i %% 100) / 100.0, jsonb_build_object('i', i), i,"
        "        now() - CAST(%s AS interval) + i * interval '1 minute'"
        " FROM generate_series(1, %s) i",
        (tenant, age, rows),
    )


def _partitions(conn: psycopg.Connection) -> list[str]:
    return [
        r[0]
        for r in conn.execute(
            "SELECT partition_schemaname || '.' || partition_tablename"
            " FROM partman.show_partitions(%s)",
            (PARENT,),
        )
    ]


def _where(conn: psycopg.Connection, tenant: str) -> set[str]:
    """The partitions that hold a tenant's rows."""
    return {
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT 'public.' || tableoid::regclass::text"
            " FROM constitutional_validations WHERE tenant_id = %s",
            (tenant,),
        )
    }


def _fingerprint(conn: psycopg.Connection) -> tuple[int, str]:
    """Row count and a checksum of every row's content (not of where it is stored)."""
    row = conn.execute(
        "SELECT count(*), md5(string_agg(v::text, '|' ORDER BY v.id))"
        " FROM constitutional_validations v"
    ).fetchone()
    assert row is not None
    return row[0], row[1]


def _run_partman_maintenance(url: str) -> None:
    """``CALL partman.run_maintenance_proc()`` on a session of its own, as psql or cron would."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CALL partman.run_maintenance_proc()")


def _default_rows(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT count(*) FROM constitutional_validations_default").fetchone()
    assert row is not None
    return int(row[0])


# -- premade partitions ---------------------------------------------------------------------


def test_maintenance_makes_the_future_partitions_again_after_they_ran_out(
    store: str, db: psycopg.Connection
) -> None:
    maintain(store, _settings())  # the steady state (the migration may premake one fewer)
    premade = _partitions(db)
    newest_two = premade[-2:]
    for name in newest_two:  # as if maintenance had not run for two months
        db.execute(f"DROP TABLE {name}")

    report = maintain(store, _settings())

    assert report.created == tuple(newest_two)
    assert report.dropped == ()
    assert report.moved == ()
    assert _partitions(db) == premade
    assert report.lines()[0].startswith(f"maintained {PARENT} in ")
    assert report.lines()[0].endswith(
        "2 partitions created, 0 dropped, 0 rows moved out of the default partition"
    )
    # The two DROP TABLEs left ledger entries (migration 0010), which maintenance seals.
    sealed = [f"sealed ledger block {report.sealed_block}: 2 entries"]
    assert [f"created {name}" for name in newest_two] + sealed == report.lines()[1:]

    again = maintain(store, _settings())
    assert (again.created, again.dropped, again.moved) == ((), (), ())


def _without_dependency_statistics(conn: psycopg.Connection) -> list[str]:
    """Partitions (default included) with no (tenant_id, decision_id) dependency statistics."""
    return [
        r[0]
        for r in conn.execute(
            "SELECT i.inhrelid::regclass::text FROM pg_inherits i"
            " WHERE i.inhparent = 'constitutional_validations'::regclass"
            "   AND NOT EXISTS (SELECT 1 FROM pg_statistic_ext s"
            "                    WHERE s.stxrelid = i.inhrelid AND s.stxkind = '{f}'"
            "                      AND s.stxkeys::text = ("
            "                          SELECT string_agg(a.attnum::text, ' ' ORDER BY a.attnum)"
            "                          FROM pg_attribute a WHERE a.attrelid = i.inhrelid"
            "                           AND a.attname IN ('tenant_id', 'decision_id')))"
        )
    ]


def test_every_partition_tells_the_planner_that_a_decision_belongs_to_one_tenant(
    store: str, db: psycopg.Connection
) -> None:
    assert len(_partitions(db)) >= 4
    assert _without_dependency_statistics(db) == []

    newest = _partitions(db)[-1]
    db.execute(f"DROP TABLE {newest}")
    maintain(store, _settings())  # makes the partition again, and its statistics

    assert newest in _partitions(db)
    assert _without_dependency_statistics(db) == []
    _insert(db, "t", 500, "1 hour")
    db.execute("ANALYZE constitutional_validations")
    filled = db.execute(
        "SELECT count(*) FROM pg_stats_ext WHERE tablename LIKE 'constitutional_validations_p%'"
        " AND dependencies IS NOT NULL"
    ).fetchone()
    assert filled is not None and filled[0] >= 1


# -- rows in the default partition ----------------------------------------------------------


def test_rows_in_the_default_partition_fail_every_maintenance_run_until_maintain_moves_them(
    store: str, db: psycopg.Connection
) -> None:
    _insert(db, "current", 20, "1 hour")
    _insert(db, "stale", 5, "8 months")  # older than every partition
    _insert(db, "ahead", 3, "-6 months")  # past the premade partitions (a clock gone wrong)
    assert _default_rows(db) == 8
    before = _fingerprint(db)

    for _ in range(2):  # every run, each in a session of its own, fails the same way
        with pytest.raises(psycopg.errors.RaiseException, match=VIOLATION):
            _run_partman_maintenance(store)
    assert _fingerprint(db) == before

    report = maintain(store, _settings())

    assert _default_rows(db) == 0
    assert _fingerprint(db) == before  # no row lost, none duplicated, none changed
    [stale_partition] = _where(db, "stale")
    [ahead_partition] = _where(db, "ahead")
    assert [(m.partition, m.rows, m.kept) for m in report.moved] == [
        (stale_partition, 5, True),
        (ahead_partition, 3, True),
    ]
    assert set(report.created) >= {stale_partition, ahead_partition}
    assert report.rows_moved == 8 and report.rows_expired == 0
    assert report.default_rows_left == 0 and report.skipped is None
    lines = report.lines()
    assert "8 rows moved out of the default partition" in lines[0]
    assert any(
        line.startswith("moved 5 rows (") and line.endswith(stale_partition) for line in lines
    )
    assert any(f"into {ahead_partition} (dated in the future" in line for line in lines)

    _run_partman_maintenance(store)  # pg_partman's own maintenance works again
    assert db.execute("SELECT count(*) FROM partman.check_default()").fetchone() == (0,)


def test_rows_older_than_every_partition_do_not_fail_maintenance_but_escape_retention(
    store: str, db: psycopg.Connection
) -> None:
    _insert(db, "stale", 4, "8 months")

    _run_partman_maintenance(store)  # succeeds...
    assert _default_rows(db) == 4  # ...and leaves them where retention never looks
    assert db.execute("SELECT default_table, count FROM partman.check_default()").fetchall() == [
        ("public.constitutional_validations_default", 4)
    ]

    report = maintain(store, _settings())
    assert _default_rows(db) == 0
    assert [(m.partition, m.rows) for m in report.moved] == [(p, 4) for p in _where(db, "stale")]


def test_moving_rows_fires_no_statement_trigger_of_the_parent(
    store: str, db: psycopg.Connection
) -> None:
    """partition_data_proc deletes from the default and inserts into the child directly."""
    db.execute("CREATE TABLE trigger_tally (op text, rows bigint)")
    db.execute(
        """
        CREATE FUNCTION tally() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'INSERT' THEN
                INSERT INTO trigger_tally SELECT TG_OP, count(*) FROM new_rows;
            ELSE
                INSERT INTO trigger_tally SELECT TG_OP, count(*) FROM old_rows;
            END IF;
            RETURN NULL;
        END $$
        """
    )
    db.execute(
        "CREATE TRIGGER tally_insert AFTER INSERT ON constitutional_validations"
        " REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tally()"
    )
    db.execute(
        "CREATE TRIGGER tally_delete AFTER DELETE ON constitutional_validations"
        " REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION tally()"
    )
    _insert(db, "stale", 6, "8 months")
    _insert(db, "ahead", 2, "-6 months")
    tally = "SELECT op, rows FROM trigger_tally ORDER BY op, rows"
    assert db.execute(tally).fetchall() == [("INSERT", 2), ("INSERT", 6)]

    report = maintain(store, _settings())

    assert report.rows_moved == 8
    assert db.execute(tally).fetchall() == [("INSERT", 2), ("INSERT", 6)]


# -- retention ------------------------------------------------------------------------------


def test_retention_drops_partitions_older_than_the_retention(
    store: str, db: psycopg.Connection
) -> None:
    for months in (15, 11):
        db.execute(
            "SELECT partman.create_partition_time(%s, ARRAY[now() - CAST(%s AS interval)])",
            (PARENT, f"{months} months"),
        )
    _insert(db, "expired", 3, "15 months")
    _insert(db, "kept", 2, "11 months")
    [expired] = _where(db, "expired")
    [kept] = _where(db, "kept")
    assert _default_rows(db) == 0

    report = maintain(store, _settings())

    assert report.dropped == (expired,)
    assert report.retention == "1 year 1 mon"
    assert expired not in _partitions(db) and kept in _partitions(db)
    assert _where(db, "expired") == set() and _where(db, "kept") == {kept}
    assert f"dropped {expired}, older than the retention (1 year 1 mon)" in report.lines()


def test_rows_older_than_the_retention_in_the_default_are_moved_then_deleted_and_reported(
    store: str, db: psycopg.Connection
) -> None:
    _insert(db, "current", 10, "1 hour")
    _insert(db, "expired", 4, "15 months")
    _insert(db, "stale", 2, "8 months")
    count_before, _ = _fingerprint(db)

    report = maintain(store, _settings())

    assert _fingerprint(db)[0] == count_before - 4
    assert _where(db, "expired") == set()
    assert _default_rows(db) == 0
    [expired] = [m for m in report.moved if not m.kept]
    assert expired.rows == 4 and expired.partition not in _partitions(db)
    assert report.rows_expired == 4 and report.rows_moved == 6
    assert "(4 deleted by retention)" in report.lines()[0]
    assert any(
        line.startswith("deleted 4 rows (")
        and line.endswith(f"moved into {expired.partition}, which retention then dropped")
        for line in report.lines()
    )


# -- locks, errors, other schemas -----------------------------------------------------------


def test_a_failed_run_keeps_partmans_lock_and_maintain_names_the_session(
    store: str, db: psycopg.Connection
) -> None:
    _insert(db, "ahead", 1, "-6 months")
    with psycopg.connect(store, autocommit=True, application_name="stuck-maintenance") as stuck:
        with pytest.raises(psycopg.errors.RaiseException):
            stuck.execute("CALL partman.run_maintenance_proc()")
        # pg_partman's lock is session-level: it outlives the failure, and while this session
        # lives (a pooled connection, say) every other session's maintenance does nothing.
        pid = stuck.info.backend_pid

        report = maintain(store, _settings())

        assert report.skipped is not None
        assert f"pid {pid} 'stuck-maintenance' idle" in report.skipped
        assert report.rows_moved == 1  # the move is ours and still happened
        assert any(line.startswith("skipped: another session holds") for line in report.lines())
    assert maintain(store, _settings()).skipped is None


def test_maintain_of_an_unmigrated_database_says_to_migrate(fresh_database: str) -> None:
    with pytest.raises(SchemaNotReadyError, match="run acgs-db migrate"):
        maintain(fresh_database, _settings())


def test_a_failure_is_one_line_naming_the_cause(store: str, db: psycopg.Connection) -> None:
    newest = _partitions(db)[-1]
    db.execute(f"DROP TABLE {newest}")  # so that maintenance must make a partition...
    db.execute("DROP TABLE partman.template_public_constitutional_validations")  # ...and can't

    with pytest.raises(MaintenanceError) as caught:
        maintain(store, _settings())

    message = str(caught.value)
    assert message.startswith("partition maintenance failed: Unable to find configured template")
    assert "\n" not in message


def test_the_procedure_maintains_its_own_schema_from_any_search_path(
    fresh_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACGS_SCHEMA", "audit")
    schema.upgrade(fresh_database)
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO audit.constitutional_validations (tenant_id, decision_id,"
            " compliance_score, created_at) VALUES ('ahead', 'd', 0.5, now() + interval '7 months')"
        )
        assert conn.execute("SHOW search_path").fetchone() == ('"$user", public',)
        conn.execute("CALL audit.acgs_partition_maintenance()")
        rows = conn.execute(
            "SELECT count(*) FROM audit.constitutional_validations_default"
        ).fetchone()
        assert rows == (0,)
        conn.execute(
            "INSERT INTO audit.constitutional_validations (tenant_id, decision_id,"
            " compliance_score, created_at) VALUES ('ahead', 'd', 0.5, now() + interval '9 months')"
        )
    report = maintain(fresh_database, Settings.from_env())
    assert report.parent == "audit.constitutional_validations"
    assert [m.rows for m in report.moved] == [1]


# -- psql -----------------------------------------------------------------------------------


def _script(url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ACGS_DATABASE_URL": url}
    env.pop("ACGS_SCHEMA", None)
    return subprocess.run([str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120)


def test_the_psql_script_stops_on_the_error_and_then_moves_the_rows_once_migrated(
    fresh_database: str,
) -> None:
    schema.upgrade(fresh_database, "0001_schema")  # no shared procedure: plain pg_partman
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        _insert(conn, "ahead", 3, "-6 months")
        failed = _script(fresh_database)
        assert failed.returncode == 3  # psql's status when ON_ERROR_STOP stops a script
        assert VIOLATION in failed.stderr

        schema.upgrade(fresh_database, "0002_maintenance")
        done = _script(fresh_database)
        assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
        assert _default_rows(conn) == 0
        assert _where(conn, "ahead") != {"public.constitutional_validations_default"}


def test_the_report_spans_the_dates_of_the_moved_rows() -> None:
    from acgs_db.partitions import MaintenanceReport, MovedRows

    first, last = datetime(2026, 3, 1, 9), datetime(2026, 3, 4, 18)
    report = MaintenanceReport(
        parent=PARENT,
        retention="1 year 1 mon",
        created=("public.constitutional_validations_p2026_03",),
        dropped=(),
        moved=(MovedRows("public.constitutional_validations_p2026_03", 1, first, last, True),),
        default_rows_left=2,
        ran_at=datetime(2026, 11, 26),
        duration_s=0.25,
    )
    assert report.lines() == [
        f"maintained {PARENT} in 0.250 s: 1 partition created, 0 dropped,"
        " 1 row moved out of the default partition",
        "moved 1 row (2026-03-01 to 2026-03-04) into public.constitutional_validations_p2026_03",
        "created public.constitutional_validations_p2026_03",
        "warning: 2 rows still in the default partition (written during the run, or left to a"
        " concurrent run)",
    ]
