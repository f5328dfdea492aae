"""The operator commands as cron and operators run them: exit status and the lines printed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import psycopg
import pytest

from acgs_db import schema
from acgs_db.devdb import free_port

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
def store(fresh_database: str) -> Iterator[str]:
    """A migrated database of its own (its pg_cron jobs are removed afterwards)."""
    schema.upgrade(fresh_database)
    yield fresh_database
    _cli(fresh_database, "schedule", "--unschedule")


# -- refresh --------------------------------------------------------------------------------


def test_refresh_prints_one_line_and_exits_0(database_url: str) -> None:
    done = _cli(database_url, "refresh")
    assert done.returncode == 0
    assert done.stderr == ""
    [line] = done.stdout.splitlines()
    assert line.startswith(f"refreshed {VIEW} in ") and line.endswith(" s")


def test_refresh_skips_with_exit_0_while_another_session_refreshes(database_url: str) -> None:
    with psycopg.connect(database_url) as other:
        other.execute("SELECT refresh_tenant_metrics_24h()")  # its lock lasts until commit
        done = _cli(database_url, "refresh")
    assert done.returncode == 0
    assert done.stderr == ""
    [line] = done.stdout.splitlines()
    assert line.startswith(f"skipped: another session is refreshing {VIEW}")


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
    done = _cli(store, "maintain")
    assert done.returncode == 0
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert lines[0].startswith("maintained public.constitutional_validations in ")
    assert lines[0].endswith("2 rows moved out of the default partition")
    assert any(line.startswith("moved 2 rows (") for line in lines)
    assert lines[-1] == (
        "recovered prepared bulk-insert parts older than 60 s: committed 0, rolled back 0"
    )


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
