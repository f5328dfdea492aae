"""pg_cron jobs: registration, idempotence, several databases, removal, and a real run."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest
from conftest import Server

from acgs_db.errors import ConfigurationError, SchemaNotReadyError
from acgs_db.schedule import (
    CronJob,
    cron_expression,
    job_name,
    schedule,
    scheduled,
    unschedule,
)
from acgs_db.settings import Settings


def _settings(**overrides: object) -> Settings:
    return Settings.from_env({}, **overrides)


def _dbname(url: str) -> str:
    return str(psycopg.conninfo.conninfo_to_dict(url)["dbname"])


@pytest.fixture
def store(migrated_database: str) -> Iterator[str]:
    """A migrated database of its own; its jobs are removed afterwards, whatever happens."""
    yield migrated_database
    unschedule(migrated_database, _settings())


@pytest.fixture
def cron_db(pg_server: Server) -> Iterator[psycopg.Connection]:
    """A connection to the database where pg_cron lives (cron.database_name)."""
    with psycopg.connect(pg_server.url_for("postgres"), autocommit=True) as conn:
        yield conn


def _rows(cron_db: psycopg.Connection, database: str) -> list[tuple[object, ...]]:
    return cron_db.execute(
        "SELECT jobname, schedule, command, database, active FROM cron.job"
        " WHERE database = %s ORDER BY jobname",
        (database,),
    ).fetchall()


# -- registration ---------------------------------------------------------------------------


def test_schedule_registers_the_refresh_and_the_maintenance_for_the_database(
    store: str, cron_db: psycopg.Connection
) -> None:
    database = _dbname(store)

    jobs = schedule(store, _settings(), every="5min")

    assert _rows(cron_db, database) == [
        (
            f"acgs:{database}:public:partition-maintenance",
            "7 * * * *",
            "CALL \"public\".acgs_partition_maintenance(p_lock_timeout => '2 s', p_retries => 5)",
            database,
            True,
        ),
        (
            f"acgs:{database}:public:refresh",
            "*/5 * * * *",
            'SELECT "public".refresh_tenant_metrics_24h()',
            database,
            True,
        ),
    ]
    assert sorted(job.name for job in jobs) == [r[0] for r in _rows(cron_db, database)]
    assert scheduled(store, _settings()) == jobs


def test_scheduling_again_updates_the_same_jobs(store: str, cron_db: psycopg.Connection) -> None:
    first = schedule(store, _settings(), every="5min")
    again = schedule(store, _settings(), every="5min")
    assert again == first

    changed = schedule(store, _settings(), every="1min", maintenance_every="2h")

    assert [job.jobid for job in changed] == [job.jobid for job in first]
    assert {job.name: job.schedule for job in changed} == {
        f"acgs:{_dbname(store)}:public:refresh": "* * * * *",
        f"acgs:{_dbname(store)}:public:partition-maintenance": "7 */2 * * *",
    }
    assert len(_rows(cron_db, _dbname(store))) == 2


def test_the_refresh_schedule_defaults_to_the_refresh_interval(store: str) -> None:
    jobs = schedule(store, _settings(refresh_interval=600.0))
    assert [job.schedule for job in jobs if job.name.endswith(":refresh")] == ["*/10 * * * *"]


def test_two_databases_on_one_server_keep_their_own_jobs(
    store: str, pg_server: Server, template_database: str, cron_db: psycopg.Connection
) -> None:
    other = pg_server.clone_database(template_database)
    try:
        mine = schedule(store, _settings())
        theirs = schedule(other, _settings())
        assert {j.jobid for j in mine}.isdisjoint({j.jobid for j in theirs})

        removed = unschedule(store, _settings())

        assert sorted(j.jobid for j in removed) == sorted(j.jobid for j in mine)
        assert _rows(cron_db, _dbname(store)) == []
        assert scheduled(other, _settings()) == theirs
    finally:
        unschedule(other, _settings())
        pg_server.drop_database(other)


def test_unschedule_removes_the_jobs_and_is_harmless_when_there_are_none(
    store: str, cron_db: psycopg.Connection
) -> None:
    jobs = schedule(store, _settings())

    assert sorted(unschedule(store, _settings()), key=_jobid) == sorted(jobs, key=_jobid)
    assert _rows(cron_db, _dbname(store)) == []
    assert unschedule(store, _settings()) == []


def _jobid(job: CronJob) -> int:
    return job.jobid


# -- refusals -------------------------------------------------------------------------------


def test_a_database_without_the_schema_is_refused(fresh_database: str) -> None:
    with pytest.raises(SchemaNotReadyError, match="run acgs-db migrate"):
        schedule(fresh_database, _settings())


def test_the_wrong_cron_database_is_named_with_the_right_one(store: str) -> None:
    with pytest.raises(ConfigurationError, match="ACGS_CRON_DATABASE=postgres"):
        schedule(store, _settings(cron_database=_dbname(store)))


@pytest.mark.parametrize(
    ("every", "expected"),
    [
        ("1min", "* * * * *"),
        ("5min", "*/5 * * * *"),
        ("15 minutes", "*/15 * * * *"),
        ("300s", "*/5 * * * *"),
        ("60min", "0 * * * *"),
        ("1h", "0 * * * *"),
        ("6h", "0 */6 * * *"),
        ("1d", "0 0 * * *"),
        ("*/7 2-5 * * 1", "*/7 2-5 * * 1"),
    ],
)
def test_every_becomes_a_cron_schedule(every: str, expected: str) -> None:
    assert cron_expression(every) == expected


@pytest.mark.parametrize(
    ("every", "reason"),
    [
        ("30s", "whole minutes"),
        ("90s", "whole minutes"),
        ("7min", "divisor"),
        ("5h", "divisor"),
        ("2d", "divisor"),
        ("often", "expected e.g."),
    ],
)
def test_schedules_pg_cron_cannot_keep_evenly_are_refused(every: str, reason: str) -> None:
    with pytest.raises(ConfigurationError, match=reason):
        cron_expression(every)


def test_job_names_fit_a_postgres_name_and_stay_distinct() -> None:
    assert job_name("acgs", "public", "refresh") == "acgs:acgs:public:refresh"
    long_a, long_b = "a" * 60 + "1", "a" * 60 + "2"
    names = {job_name(db, "public", "refresh") for db in (long_a, long_b)}
    assert len(names) == 2
    assert all(len(n) <= 63 and n.startswith("acgs:") for n in names)


# -- a real run -----------------------------------------------------------------------------


@pytest.mark.slow
def test_pg_cron_runs_both_jobs_in_the_target_database(
    store: str, cron_db: psycopg.Connection
) -> None:
    with psycopg.connect(store, autocommit=True) as db:
        db.execute(
            "INSERT INTO constitutional_validations (tenant_id, decision_id, compliance_score,"
            " created_at) VALUES ('cron', 'd', 0.5, now() - interval '1 hour'),"
            " ('cron', 'ahead', 0.5, now() + interval '6 months')"
        )
        jobs = {
            job.name.rsplit(":", 1)[1]: job.jobid
            for job in schedule(store, _settings(), every="1min", maintenance_every="1min")
        }

        deadline = time.monotonic() + 130  # the next minute, or the one after if we just missed it
        runs: list[tuple[object, ...]] = []
        while time.monotonic() < deadline:
            runs = cron_db.execute(
                "SELECT jobid, status, return_message FROM cron.job_run_details"
                " WHERE jobid = ANY(%s) AND status IN ('succeeded', 'failed') ORDER BY runid",
                (list(jobs.values()),),
            ).fetchall()
            if {r[0] for r in runs} == set(jobs.values()):
                break
            time.sleep(1)

        by_job = {jobid: (status, message) for jobid, status, message in runs}
        assert by_job[jobs["refresh"]] == ("succeeded", "SELECT 1")
        assert by_job[jobs["partition-maintenance"]] == ("succeeded", "CALL")
        figures = db.execute(
            "SELECT total_validations FROM tenant_constitutional_metrics_24h"
            " WHERE tenant_id = 'cron'"
        ).fetchone()
        assert figures is not None and figures[0] >= 1  # the view holds the tenant: refreshed
        default = db.execute("SELECT count(*) FROM constitutional_validations_default")
        assert default.fetchone() == (0,)
