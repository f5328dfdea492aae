"""The operator commands as cron and operators run them: exit status and the lines printed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC

import psycopg
import pytest

from acgs_db.tooling import schema
from acgs_db.tooling.devdb import free_port

VIEW = "tenant_constitutional_metrics_24h"


def _env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACGS_")}
    return {**env, "ACGS_DATABASE_URL": url}


def _cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "acgs_db", *args],
        env=_env(url),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def store(migrated_database: str) -> Iterator[str]:
    """A migrated database of its own (its pg_cron jobs are removed afterwards)."""
    yield migrated_database
    _cli(migrated_database, "schedule", "--unschedule")


# -- refresh --------------------------------------------------------------------------------


def test_refresh_prints_one_line_and_exits_0(store: str) -> None:
    # A database of its own: other tests leave backlog deltas in the session database.
    done = _cli(store, "refresh")
    assert done.returncode == 0
    assert done.stderr == ""
    [line] = done.stdout.splitlines()
    assert line.startswith(f"refreshed {VIEW} in ")
    assert line.endswith(" s; rollup backlog: none")


def test_refresh_skips_with_exit_0_while_another_session_refreshes(database_url: str) -> None:
    with psycopg.connect(database_url) as other:
        other.execute("SELECT refresh_tenant_metrics_24h()")  # its lock lasts until commit
        done = _cli(database_url, "refresh")
    assert done.returncode == 0
    assert done.stderr == ""
    [line] = done.stdout.splitlines()
    assert line.startswith(f"skipped: another session is refreshing {VIEW}")
    assert "; rollup backlog: " in line


def test_refresh_of_an_unmigrated_database_fails_with_one_line(fresh_database: str) -> None:
    done = _cli(fresh_database, "refresh")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"error: refresh of {VIEW} failed: UndefinedFunctionError: function"
        " refresh_tenant_metrics_24h() does not exist (run acgs-db migrate)"
    ]


def test_refresh_without_a_server_fails_with_one_line() -> None:
    done = _cli(f"postgresql://postgres@127.0.0.1:{free_port()}/acgs", "refresh")
    assert done.returncode == 1
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith(f"error: refresh of {VIEW} failed: ConnectionRefusedError")


# -- refresher ------------------------------------------------------------------------------


def _scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line.startswith("acgs_db_refresh"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_the_refresher_serves_metrics_and_stops_cleanly_on_a_signal(
    database_url: str, signum: signal.Signals
) -> None:
    port = free_port()
    command = ["refresher", "--interval", "0.2", "--metrics-port", str(port)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "acgs_db", *command],
        env=_env(database_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first == (
            f"refresher: refreshing {VIEW} every 0.2 s;"
            f" metrics on http://127.0.0.1:{port}/metrics\n"
        )
        deadline = time.monotonic() + 20
        samples: dict[str, float] = {}
        while time.monotonic() < deadline:
            samples = _scrape(port)
            if samples.get("acgs_db_refresh_duration_seconds_count", 0) >= 2:
                break
            time.sleep(0.1)
        assert samples["acgs_db_refresh_duration_seconds_count"] >= 2
        assert samples["acgs_db_refresh_last_success_timestamp_seconds"] > time.time() - 60
        assert samples["acgs_db_refresh_failures_total"] == 0

        proc.send_signal(signum)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    [stopped] = out.splitlines()
    assert stopped.startswith("refresher: stopped (")
    assert " 0 failures, last success 20" in stopped
    assert "Traceback" not in err and "refreshed the 24-hour view" in err


def test_a_busy_metrics_port_is_one_error_line(database_url: str) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _cli(database_url, "refresher", "--metrics-port", str(port))
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith(f"error: cannot serve metrics on 127.0.0.1:{port}: ")


# -- maintain -------------------------------------------------------------------------------


def test_maintain_reports_the_rows_it_moved_and_exits_0(store: str) -> None:
    with psycopg.connect(store, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO constitutional_validations (tenant_id, decision_id, compliance_score,"
            " created_at) VALUES ('t', 'a', 0.5, now() + interval '6 months'),"
            " ('t', 'b', 0.5, now() + interval '6 months')"
        )
        conn.execute(
            "INSERT INTO ingest_batches (batch_id, committed_at)"
            " VALUES ('old', now() - interval '2 days'), ('new', now())"
        )
    done = _cli(store, "maintain")
    assert done.returncode == 0
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert lines[0].startswith("maintained public.constitutional_validations in ")
    assert lines[0].endswith("2 rows moved out of the default partition")
    assert any(line.startswith("moved 2 rows (") for line in lines)
    assert lines[-4:] == [
        "recovered prepared bulk-insert parts older than 60 s: committed 0, rolled back 0",
        "purged 1 batch-ledger rows older than 86400 s",
        "folded 0 backlog delta rows of the rollup",
        "rollup backlog: none",
    ]
    with psycopg.connect(store) as conn:
        assert conn.execute("SELECT batch_id FROM ingest_batches").fetchall() == [("new",)]


def test_refresh_shows_a_backfill_and_maintain_folds_it(store: str) -> None:
    with psycopg.connect(store, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO constitutional_validations (tenant_id, decision_id, compliance_score,"
            " processing_time_ms, created_at) SELECT 't', 'd', 0.5, g,"
            " date_trunc('hour', now()) - interval '3 days' - g * interval '1 hour'"
            " FROM generate_series(0, 9) AS g"
        )
        oldest = conn.execute(
            "SELECT date_trunc('hour', now()) - interval '3 days' - interval '9 hours'"
        ).fetchone()
        assert oldest is not None
    done = _cli(store, "refresh")
    assert done.returncode == 0, done.stderr
    [line] = done.stdout.splitlines()
    assert line.endswith(
        "; rollup backlog: 10 delta rows in 10 hour buckets older than the window, oldest "
        + oldest[0].astimezone(UTC).isoformat(timespec="seconds")
    )
    done = _cli(store, "maintain")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[-2:] == ["folded 10 backlog delta rows of the rollup", "rollup backlog: none"]
    with psycopg.connect(store) as conn:
        row = conn.execute("SELECT sum(validations) FROM validation_rollup").fetchone()
    assert row == (10,)


def test_maintain_of_an_unmigrated_database_is_one_error_line(fresh_database: str) -> None:
    done = _cli(fresh_database, "maintain")
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "error: pg_partman does not manage public.constitutional_validations:"
        " run acgs-db migrate (alembic upgrade head)"
    ]


# -- schedule -------------------------------------------------------------------------------


def test_schedule_and_unschedule_print_a_line_per_job(store: str) -> None:
    database = str(psycopg.conninfo.conninfo_to_dict(store)["dbname"])

    done = _cli(store, "schedule", "--pg-cron", "--every", "10min")
    assert done.returncode == 0, done.stderr
    refresh, maintenance = done.stdout.splitlines()
    assert refresh.startswith(f"scheduled acgs:{database}:public:refresh (pg_cron job ")
    assert refresh.endswith(
        f"'*/10 * * * *', in database {database}): SELECT \"public\".refresh_tenant_metrics_24h()"
    )
    assert maintenance.endswith(
        f"'7 * * * *', in database {database}): CALL \"public\".acgs_partition_maintenance("
        "p_lock_timeout => '2 s', p_retries => 5)"
    )

    gone = _cli(store, "schedule", "--unschedule")
    assert gone.returncode == 0
    assert [line.split(" (")[0] for line in gone.stdout.splitlines()] == [
        f"unscheduled acgs:{database}:public:refresh",
        f"unscheduled acgs:{database}:public:partition-maintenance",
    ]
    again = _cli(store, "schedule", "--unschedule")
    assert (again.returncode, again.stdout) == (
        0,
        "no acgs-db pg_cron jobs for schema public of this database\n",
    )


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        ((), 2, "error: choose one of --pg-cron and --unschedule"),
        (("--pg-cron", "--unschedule"), 2, "error: choose one of --pg-cron and --unschedule"),
        (
            ("--pg-cron", "--every", "30s"),
            1,
            "error: --every '30s': pg_cron 1.4 schedules whole minutes (no seconds schedules)",
        ),
    ],
)
def test_schedule_refuses_what_it_cannot_do(
    database_url: str, args: tuple[str, ...], status: int, message: str
) -> None:
    done = _cli(database_url, "schedule", *args)
    assert (done.returncode, done.stdout, done.stderr.splitlines()) == (status, "", [message])


# -- downgrade ------------------------------------------------------------------------------


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace"
            " AND relkind IN ('r', 'p')"
        ).fetchall()
    return {row[0] for row in rows}


def _revision(url: str) -> str | None:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    return None if row is None else row[0]


def test_downgrade_needs_a_revision_and_drops_nothing_without_one(store: str) -> None:
    before = _tables(store)
    done = _cli(store, "downgrade")
    assert done.returncode == 2
    assert "Missing option '--revision'" in done.stderr
    assert "Usage:" in done.stderr
    assert _tables(store) == before
    assert _revision(store) == schema.head_revision()


def test_downgrade_of_empty_tables_needs_no_confirmation(store: str) -> None:
    done = _cli(store, "downgrade", "--revision", "0003_rollup")
    assert (done.returncode, done.stderr) == (0, "")
    assert "undone: " in done.stdout and "0004_batches" in done.stdout
    assert _revision(store) == "0003_rollup"
    assert "ingest_batches" not in _tables(store)


def test_downgrade_that_would_drop_rows_needs_yes(store: str) -> None:
    with psycopg.connect(store) as conn:
        conn.execute(
            "INSERT INTO constitutional_validations (tenant_id, decision_id, compliance_score)"
            " SELECT 't', 'd' || i, 0.5 FROM generate_series(1, 25) i"
        )
        conn.execute("INSERT INTO ingest_batches (batch_id, rows) VALUES ('b', 25)")
    before = _tables(store)
    done = _cli(store, "downgrade", "--revision", "base")
    assert done.returncode == 1
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("error: downgrade to base would drop tables that hold rows: ")
    assert "constitutional_validations (25 rows, exact)" in line
    assert "ingest_batches (1 rows, exact)" in line
    assert "validation_rollup_delta (1 rows, exact)" in line  # what the trigger filled
    assert "decision_validation_cache" not in line  # empty
    assert line.endswith("nothing was dropped (pass --yes to drop them)")
    assert _tables(store) == before
    assert _revision(store) == schema.head_revision()

    done = _cli(store, "downgrade", "--revision", "base", "--yes")
    assert (done.returncode, done.stderr) == (0, "")
    assert _revision(store) is None
    assert {"constitutional_validations", "ingest_batches"}.isdisjoint(_tables(store))


def test_downgrade_plan_counts_exactly_up_to_a_cap_then_estimates(store: str) -> None:
    with psycopg.connect(store) as conn:
        conn.execute(
            "INSERT INTO ingest_batches (batch_id) SELECT 'b' || i FROM generate_series(1, %s) i",
            (schema.ROWS_COUNTED + 5,),
        )
        conn.execute("ANALYZE ingest_batches")
    plan = schema.downgrade_plan(store, "0003_rollup")
    assert plan.current == schema.head_revision()
    assert plan.revisions[-1] == "0004_batches"
    [rows] = plan.tables_with_rows
    assert (rows.table, rows.exact) == ("ingest_batches", False)
    assert rows.rows > schema.ROWS_COUNTED
    assert "estimated" in rows.describe()


def test_the_ledger_downgrade_refuses_while_batches_are_prepared(store: str) -> None:
    """A part 0 left prepared on purpose (it holds its ledger row): 0004's downgrade stops
    before DROP TABLE (which would wait on the part's lock for ever) and names the remedy."""
    gid = "acgs_db:2f1c6d7e-0000-4000-8000-000000000001:0"
    done = _cli(store, "downgrade", "--revision", "0004_batches")
    assert done.returncode == 0, done.stderr
    with psycopg.connect(store) as conn:
        conn.execute(
            "INSERT INTO ingest_batches (batch_id, parts, token) VALUES"
            " ('left', 2, '2f1c6d7e-0000-4000-8000-000000000001')"
        )
        conn.execute(f"PREPARE TRANSACTION '{gid}'")
    try:
        env = {**_env(store), "PGOPTIONS": "-c lock_timeout=10s"}  # a failure, not a hang
        done = subprocess.run(
            [sys.executable, "-m", "acgs_db", "downgrade", "--revision", "0003_rollup", "--yes"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 1
        assert done.stdout == ""
        assert len(done.stderr.splitlines()) == 1, done.stderr
        [line] = done.stderr.splitlines()
        assert "bulk-insert batches are prepared but not finished" in line
        assert "acgs-db recover" in line
        assert _revision(store) == "0004_batches"
        assert "ingest_batches" in _tables(store)
    finally:
        with psycopg.connect(store, autocommit=True) as conn:
            conn.execute(f"ROLLBACK PREPARED '{gid}'")
    done = _cli(store, "downgrade", "--revision", "0003_rollup")
    assert done.returncode == 0, done.stderr
    assert "ingest_batches" not in _tables(store)
