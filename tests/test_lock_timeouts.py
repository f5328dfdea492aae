"""No lock-queue outages: migrations and partition maintenance behind a long-running reader.

A reader holds ACCESS SHARE on constitutional_validations (and every partition) in an open
transaction. A migration step or a maintenance run that needs a stronger lock queues behind it,
and every later reader and writer queues behind *that*: here they must wait no longer than the
lock timeout (a third session's statements run with statement_timeout = lock timeout + 1 s and
must succeed), the step must be retried, and succeed once the reader has gone, or fail naming
the reader. Each test has a database of its own.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

import psycopg
import pytest

from acgs_db.locks import LockTimeoutError
from acgs_db.partitions import MaintenanceError, MaintenanceReport, maintain
from acgs_db.resources import alembic_ini
from acgs_db.settings import Settings
from acgs_db.tooling import schema

PARENT = "public.constitutional_validations"
LOCK_TIMEOUT = 0.5
INSERT = (
    "INSERT INTO constitutional_validations (tenant_id, decision_id, compliance_score)"
    " VALUES ('third', 'd', 0.5)"
)


def _with_app(url: str, name: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}application_name={name}"


@contextmanager
def _long_reader(url: str) -> Iterator[psycopg.Connection]:
    """BEGIN; SELECT from the table; then idle in the open transaction, holding ACCESS SHARE on
    the parent and every partition until the block ends."""
    with psycopg.connect(url, application_name="long-reader") as conn:
        conn.execute("SELECT count(*) FROM constitutional_validations").fetchone()
        try:
            yield conn
        finally:
            conn.rollback()


def _wait_until(condition: Callable[[], bool], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        time.sleep(0.02)


def _waits_for_a_lock(url: str, application: str) -> Callable[[], bool]:
    def check() -> bool:
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity"
                " WHERE application_name = %s AND wait_event_type = 'Lock')",
                (application,),
            ).fetchone()
        return bool(row and row[0])

    return check


def _third_session_is_not_queued(url: str) -> None:
    """A plain SELECT and INSERT, each bounded by the lock timeout plus one second: they queue
    behind the waiting strong lock, which gives up after the lock timeout."""
    with psycopg.connect(url, autocommit=True, application_name="third") as conn:
        conn.execute(f"SET statement_timeout = '{int((LOCK_TIMEOUT + 1) * 1000)}ms'")
        assert conn.execute("SELECT count(*) FROM constitutional_validations").fetchone()
        conn.execute(INSERT)


T = TypeVar("T")


class _Background(Generic[T]):
    """Runs a call in a thread; ``result()`` re-raises what it raised."""

    def __init__(self, fn: Callable[[], T]) -> None:
        self._value: tuple[T] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[], T]) -> None:
        try:
            self._value = (fn(),)
        except BaseException as exc:  # handed to the test thread
            self._error = exc

    def result(self, within: float = 120.0) -> T:
        self._thread.join(within)
        assert not self._thread.is_alive(), "still running"
        if self._error is not None:
            raise self._error
        assert self._value is not None
        return self._value[0]


def _version(url: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    assert row is not None
    return str(row[0])


def _reader_pid(reader: psycopg.Connection) -> int:
    return int(reader.info.backend_pid)


# -- migrations -----------------------------------------------------------------------------


@pytest.fixture
def at_0004(fresh_database: str) -> str:
    """A database migrated to 0004: the next revision, 0005_roles, needs ACCESS EXCLUSIVE on
    constitutional_validations (ENABLE ROW LEVEL SECURITY)."""
    schema.upgrade(fresh_database, "0004_batches")
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        conn.execute(INSERT)
    return fresh_database


def test_a_migration_behind_a_long_reader_never_queues_the_table_and_succeeds_after_it(
    at_0004: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("ACGS_LOCK_TIMEOUT", str(LOCK_TIMEOUT))
    monkeypatch.setenv("ACGS_LOCK_RETRIES", "30")
    caplog.set_level("WARNING", logger="acgs_db.migrations")
    with _long_reader(at_0004):
        migration = _Background(
            lambda: schema.upgrade(_with_app(at_0004, "migrating"), "0005_roles")
        )
        for _ in range(3):  # while the migration waits, and between its tries
            _wait_until(_waits_for_a_lock(at_0004, "migrating"))
            _third_session_is_not_queued(at_0004)
        assert _version(at_0004) == "0004_batches"
    migration.result()  # the reader is gone: a retry succeeds

    assert _version(at_0004) == "0005_roles"
    retries = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert retries and all(m.startswith("migration 0005_roles (upgrade) waited") for m in retries)


# What a migration that fills bins under the fold's row lock (0015: hour bins; 0016: coarse day
# bins) must hold once the fold it waited behind has committed: the rows that fold folded are
# binned (their sum), and the bins equal the rollup summed.
_BINNED_AFTER_THE_FOLD = {
    "0014_deferred_fold": (
        "SELECT (SELECT sum(n) FROM rollup_bins_hour WHERE tenant_id = 'folded'),"
        " (SELECT count(*) FROM ((SELECT tenant_id, bucket, bin, n::numeric"
        "   FROM rollup_bins_hour)"
        "  EXCEPT (SELECT tenant_id, bucket, rollup_hour_bin(processing_time_ms),"
        "   sum(validations) FROM validation_rollup WHERE processing_time_ms IS NOT NULL"
        "   GROUP BY 1, 2, 3)) AS d)"
    ),
    "0015_hour_bins": (
        "SELECT (SELECT sum(n) FROM rollup_bins_day_coarse WHERE tenant_id = 'folded'),"
        " (SELECT count(*) FROM ((SELECT tenant_id, day, bin, n::numeric"
        "   FROM rollup_bins_day_coarse)"
        "  EXCEPT (SELECT tenant_id,"
        "   date_bin(interval '1 day', bucket, timestamptz '2000-01-01 00:00:00+00'),"
        "   rollup_hour_bin(processing_time_ms), sum(validations) FROM validation_rollup"
        "   WHERE processing_time_ms IS NOT NULL GROUP BY 1, 2, 3)) AS d)"
    ),
}


@pytest.mark.parametrize("before", sorted(_BINNED_AFTER_THE_FOLD))
def test_a_migration_behind_a_long_fold_waits_under_the_lock_timeout_then_bins_it_too(
    fresh_database: str, monkeypatch: pytest.MonkeyPatch, before: str
) -> None:
    """0015 and 0016 fill their bins under the fold's row lock: behind a fold left open they
    retry (writers and readers go on meanwhile), and once that fold commits its rows are binned."""
    url = fresh_database
    schema.upgrade(url, before)
    monkeypatch.setenv("ACGS_LOCK_TIMEOUT", str(LOCK_TIMEOUT))
    monkeypatch.setenv("ACGS_LOCK_RETRIES", "30")
    with psycopg.connect(url, application_name="long-fold") as fold:
        fold.execute(INSERT)
        fold.execute(
            "INSERT INTO constitutional_validations"
            " (tenant_id, decision_id, compliance_score, processing_time_ms)"
            " SELECT 'folded', 'd', 0.97, g FROM generate_series(1, 500) AS g"
        )
        assert fold.execute("SELECT fold_validation_rollup()").fetchone() == (501,)
        migration = _Background(lambda: schema.upgrade(_with_app(url, "migrating"), "head"))
        for _ in range(3):
            _wait_until(_waits_for_a_lock(url, "migrating"))
            _third_session_is_not_queued(url)
        assert _version(url) == before
        fold.commit()
    migration.result()

    assert _version(url) == schema.head_revision()
    with psycopg.connect(url) as conn:
        row = conn.execute(_BINNED_AFTER_THE_FOLD[before]).fetchone()
    assert row == (500, 0)


def test_a_migration_that_keeps_timing_out_names_the_reader_and_keeps_what_went_before(
    fresh_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    at_0003 = fresh_database
    schema.upgrade(at_0003, "0003_rollup")
    monkeypatch.setenv("ACGS_LOCK_TIMEOUT", "0.2")
    monkeypatch.setenv("ACGS_LOCK_RETRIES", "1")
    with _long_reader(at_0003) as reader:
        with pytest.raises(LockTimeoutError) as caught:
            schema.upgrade(at_0003, "head")  # 0004 locks nothing that exists; 0005 does
        pid = _reader_pid(reader)

    message = str(caught.value)
    assert message.startswith("migration 0005_roles (upgrade) gave up after 2 attempts: ")
    assert "canceling statement" not in message
    assert f"pid {pid} 'long-reader' idle in transaction, transaction " in message
    assert "AccessShareLock on public.constitutional_validations" in message
    assert [b.pid for b in caught.value.blockers] == [pid]
    assert "\n" not in message
    # Each migration commits on its own: 0004 stays, the failed 0005 rolled back, none after.
    assert _version(at_0003) == "0004_batches"
    schema.upgrade(at_0003, "head")  # and without the reader it goes through
    assert _version(at_0003) == schema.head_revision()


def test_a_downgrade_behind_a_long_reader_gives_up_too(
    fresh_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    schema.upgrade(fresh_database, "0005_roles")
    monkeypatch.setenv("ACGS_LOCK_TIMEOUT", "0.2")
    monkeypatch.setenv("ACGS_LOCK_RETRIES", "0")
    with _long_reader(fresh_database) as reader, pytest.raises(LockTimeoutError) as caught:
        pid = _reader_pid(reader)
        schema.downgrade(fresh_database, "0004_batches")
    assert f"pid {pid} 'long-reader'" in str(caught.value)
    assert str(caught.value).startswith("migration 0005_roles (downgrade) gave up after 1 attempt:")
    assert _version(fresh_database) == "0005_roles"


def test_every_migration_of_the_offline_script_runs_under_the_lock_timeout() -> None:
    rendered = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(alembic_ini()), "upgrade", "head", "--sql"],
        check=True,
        capture_output=True,
        text=True,
        env={
            "PATH": "/usr/bin:/bin",
            "ACGS_DATABASE_URL": "postgresql://nobody@invalid/none",
            "ACGS_LOCK_TIMEOUT": "3",
        },
    ).stdout
    transactions = ("\n" + rendered).split("\nBEGIN;\n")[1:]
    assert len(transactions) == len(list(_revisions()))
    for body in transactions:  # the preamble comes before the revision's first statement
        lines = body.split("-- Running ", 1)[1].splitlines()[1:]
        statements = [line for line in lines if line.strip() and not line.startswith("--")]
        assert statements[:2] == [
            'SET LOCAL search_path TO "public", pg_temp;',
            "SET LOCAL lock_timeout = '3000ms';",
        ]


def _revisions() -> Iterator[str]:
    from alembic.script import ScriptDirectory

    for script in ScriptDirectory.from_config(schema.alembic_config()).walk_revisions():
        yield script.revision


# -- partition maintenance ------------------------------------------------------------------


@pytest.fixture
def store(fresh_database: str) -> str:
    """At head, with its newest partition dropped: maintenance must make one (ATTACH
    PARTITION, which takes ACCESS EXCLUSIVE on the default partition)."""
    schema.upgrade(fresh_database)
    maintain(fresh_database, Settings.from_env({}))
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        row = conn.execute(
            "SELECT partition_schemaname || '.' || partition_tablename"
            " FROM partman.show_partitions(%s, 'DESC') LIMIT 1",
            (PARENT,),
        ).fetchone()
        assert row is not None
        conn.execute(f"DROP TABLE {row[0]}")
        conn.execute(INSERT)
    return fresh_database


def _maintenance_settings(timeout: float, retries: int) -> Settings:
    return Settings.from_env({}, lock_timeout=timeout, lock_retries=retries)


def test_maintenance_behind_a_long_reader_never_queues_the_table_and_retries_after_it(
    store: str,
) -> None:
    with _long_reader(store):
        run = _Background(lambda: maintain(store, _maintenance_settings(LOCK_TIMEOUT, 30)))
        for _ in range(3):
            _wait_until(_waits_for_a_lock(store, "acgs-db maintain"))
            _third_session_is_not_queued(store)
    report: MaintenanceReport = run.result()

    assert len(report.created) == 1
    assert report.lock_retries >= 3
    assert report.skipped is None
    assert any(
        n.startswith("acgs_partition_maintenance: maintain of public.constitutional_validations")
        and "for a lock (attempt 1 of 31); retrying in" in n
        for n in report.notices
    )
    assert f"waited for locks: {report.lock_retries} retries after the lock timeout of 0.5 s" in (
        "\n".join(report.lines())
    )


def test_maintenance_that_keeps_timing_out_names_the_reader_and_keeps_no_lock(
    store: str,
) -> None:
    with _long_reader(store) as reader, psycopg.connect(store, autocommit=True) as caller:
        with pytest.raises(psycopg.errors.LockNotAvailable) as caught:
            caller.execute(
                "CALL acgs_partition_maintenance(p_lock_timeout => '200ms', p_retries => 2)"
            )
        message = caught.value.diag.message_primary or ""
        assert message.startswith(
            f"partition maintenance of {PARENT} (maintain) gave up after 3 attempts: each waited"
            " 200ms (lock_timeout) for a lock; sessions holding locks on it: "
            f"pid {_reader_pid(reader)} 'long-reader' idle in transaction, transaction "
        )
        assert "AccessShareLock on constitutional_validations" in message
        # The calling session, still open, holds no lock of pg_partman's: nothing is kept.
        held = caller.execute(
            "SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory'"
        ).fetchone()
        assert held == (0,)

        with pytest.raises(MaintenanceError, match=r"gave up after 1 attempts: .* 'long-reader'"):
            maintain(store, _maintenance_settings(0.2, 0))
    report = maintain(store, _maintenance_settings(0.2, 0))  # the reader is gone
    assert (len(report.created), report.skipped, report.lock_retries) == (1, None, 0)


def test_maintenance_refuses_a_retention_shorter_than_28_days(store: str) -> None:
    with psycopg.connect(store, autocommit=True) as conn:
        conn.execute("UPDATE partman.part_config SET retention = '13 seconds'")
        before = conn.execute("SELECT count(*) FROM partman.show_partitions(%s)", (PARENT,))
        count = before.fetchone()
        with pytest.raises(MaintenanceError, match="retention is 13 seconds, shorter than 28 days"):
            maintain(store, Settings.from_env({}))
        after = conn.execute("SELECT count(*) FROM partman.show_partitions(%s)", (PARENT,))
        assert after.fetchone() == count


def test_maintenance_rejects_a_lock_timeout_that_bounds_nothing(store: str) -> None:
    with psycopg.connect(store, autocommit=True) as conn:
        for bad in ("p_lock_timeout => '0 s'", "p_lock_timeout => '2 minutes'", "p_retries => -1"):
            with pytest.raises(psycopg.errors.InvalidParameterValue):
                conn.execute(f"CALL acgs_partition_maintenance({bad})")


def test_the_maintenance_call_passes_the_settings_by_name(store: str) -> None:
    from psycopg import sql

    from acgs_db.partitions import maintenance_arguments
    from acgs_db.resources import load_sql

    with psycopg.connect(store, autocommit=True) as conn:
        text = (
            sql.SQL(load_sql("maintenance/maintain"))
            .format(**maintenance_arguments(_maintenance_settings(0.25, 3)))
            .as_string(conn)
        )
    assert text.strip() == (
        """CALL "public".acgs_partition_maintenance(p_lock_timeout => '0.25 s', p_retries => 3)"""
    )
    assert re.search(r"p_retries => 3\)$", text.strip())
