"""pg_cron jobs for the 24-hour view's refresh and the partition maintenance.

pg_cron runs in one database per server (``cron.database_name``, ``ACGS_CRON_DATABASE``) and
starts each job in the database it names, so the jobs are registered there with
``cron.schedule_in_database`` (pg_cron 1.4.2; it has no seconds schedules). Their names hold the
target database and schema, so that several audit stores on one server keep their own jobs, and
scheduling again updates the jobs of that name in place (same jobid): it is idempotent.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from acgs_db.errors import AcgsDbError, ConfigurationError, SchemaNotReadyError, reraised_as
from acgs_db.partitions import maintenance_arguments
from acgs_db.resources import load_sql
from acgs_db.settings import Settings

REFRESH = "refresh"
MAINTENANCE = "partition-maintenance"
TASKS = (REFRESH, MAINTENANCE)
DEFAULT_MAINTENANCE_EVERY = "1h"
MAINTENANCE_MINUTE = 7
"""Hourly maintenance runs at minute 7, away from the refresh's round minutes."""
_MAX_JOB_NAME = 63  # cron.job.jobname is a name: longer names would be truncated and clash
_EVERY = re.compile(r"^\s*(\d+)\s*([a-z]+)\s*$")
_UNITS = {
    "s": 1,
    "sec": 1,
    "secs": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "min": 60,
    "mins": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
}
_CRON_FIELDS = re.compile(r"^\S+(\s+\S+){4}$")


class ScheduleError(AcgsDbError):
    """The server refused or failed a pg_cron operation (or could not be reached)."""


def _server_errors(action: str) -> contextlib.AbstractContextManager[None]:
    """Turn the server's errors into a one-line :class:`ScheduleError`."""
    return reraised_as(ScheduleError, action, psycopg.Error)


@dataclass(frozen=True, slots=True)
class CronJob:
    """A row of ``cron.job``."""

    jobid: int
    name: str
    schedule: str
    command: str
    database: str
    active: bool


def cron_expression(every: str, minute: int = 0) -> str:
    """Turn ``5min``, ``1h``, ``300s``, ``1d`` (or a 5-field cron expression) into a schedule.

    Intervals must divide an hour (minutes) or a day (hours) evenly, so that runs stay evenly
    spaced across the boundary; hourly and longer schedules run at ``minute``.
    """
    text = every.strip()
    if _CRON_FIELDS.match(text):
        return text
    match = _EVERY.match(text.lower())
    if not match or match.group(2) not in _UNITS:
        raise ConfigurationError(
            f"--every {every!r}: expected e.g. 5min, 1h, 300s, 1d or a cron expression"
        )
    seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0 or seconds % 60:
        raise ConfigurationError(
            f"--every {every!r}: pg_cron 1.4 schedules whole minutes (no seconds schedules)"
        )
    minutes = seconds // 60
    if minutes < 60 and 60 % minutes == 0:
        return "* * * * *" if minutes == 1 else f"*/{minutes} * * * *"
    hours, rest = divmod(minutes, 60)
    if rest == 0 and hours < 24 and 24 % hours == 0:
        return f"{minute} * * * *" if hours == 1 else f"{minute} */{hours} * * *"
    if minutes == 24 * 60:
        return f"{minute} 0 * * *"
    raise ConfigurationError(
        f"--every {every!r}: use a divisor of an hour (1-30min) or of a day (1-12h), or 1d, "
        "or a cron expression"
    )


def refresh_every(settings: Settings) -> str:
    """The refresh schedule's default: ``ACGS_REFRESH_INTERVAL`` in whole minutes."""
    seconds = settings.refresh_interval
    if seconds < 60 or seconds % 60:
        raise ConfigurationError(
            f"ACGS_REFRESH_INTERVAL={seconds:g} s is not whole minutes, which pg_cron needs: "
            "pass --every"
        )
    return f"{int(seconds) // 60}min"


def job_name(database: str, schema: str, task: str) -> str:
    """``acgs:<database>:<schema>:<task>``; hashed when longer than a PostgreSQL name."""
    name = f"acgs:{database}:{schema}:{task}"
    if len(name.encode()) <= _MAX_JOB_NAME:
        return name
    digest = hashlib.sha256(f"{database}:{schema}".encode()).hexdigest()[:16]
    return f"acgs:{digest}:{task}"


def job_names(database: str, schema: str) -> dict[str, str]:
    """The job name of each task for one audit store."""
    return {task: job_name(database, schema, task) for task in TASKS}


def cron_url(url: str, settings: Settings) -> str:
    """The server of ``url``, database ``ACGS_CRON_DATABASE`` (where pg_cron lives)."""
    return make_conninfo(url, dbname=settings.cron_database)


def schedule(
    url: str,
    settings: Settings | None = None,
    *,
    every: str | None = None,
    maintenance_every: str = DEFAULT_MAINTENANCE_EVERY,
) -> list[CronJob]:
    """Register (or update) the refresh and maintenance jobs of ``url``'s audit store."""
    settings = settings or Settings.from_env()
    refresh_schedule = cron_expression(every or refresh_every(settings))
    maintenance_schedule = cron_expression(maintenance_every, minute=MAINTENANCE_MINUTE)
    schema = sql.Identifier(settings.schema)
    schedules = {REFRESH: refresh_schedule, MAINTENANCE: maintenance_schedule}
    with _server_errors("scheduling with pg_cron"):
        with psycopg.connect(url, autocommit=True) as target:
            database = _check_target(target, settings.schema)
            commands = {
                REFRESH: sql.SQL(load_sql("maintenance/cron_refresh"))
                .format(schema=schema)
                .as_string(target),
                MAINTENANCE: sql.SQL(load_sql("maintenance/maintain"))
                .format(**maintenance_arguments(settings))
                .as_string(target),
            }
        names = job_names(database, settings.schema)
        with _cron_connection(url, settings) as cron:
            cron.execute(load_sql("maintenance/cron_extension"))
            for task in TASKS:
                cron.execute(
                    load_sql("maintenance/cron_schedule"),
                    {
                        "name": names[task],
                        "schedule": schedules[task],
                        "command": commands[task],
                        "database": database,
                    },
                )
            return _jobs(cron, names.values())


def unschedule(url: str, settings: Settings | None = None) -> list[CronJob]:
    """Remove the jobs of ``url``'s audit store; return those removed (none is not an error)."""
    settings = settings or Settings.from_env()
    with _server_errors("unscheduling from pg_cron"):
        names = job_names(_database_name(url), settings.schema)
        with _cron_connection(url, settings) as cron:
            if not _has_pg_cron(cron):
                return []
            jobs = _jobs(cron, names.values())
            for job in jobs:
                cron.execute(load_sql("maintenance/cron_unschedule"), {"jobid": job.jobid})
            return jobs


def scheduled(url: str, settings: Settings | None = None) -> list[CronJob]:
    """The pg_cron jobs of ``url``'s audit store."""
    settings = settings or Settings.from_env()
    with _server_errors("listing pg_cron jobs"):
        names = job_names(_database_name(url), settings.schema)
        with _cron_connection(url, settings) as cron:
            return _jobs(cron, names.values()) if _has_pg_cron(cron) else []


def _check_target(conn: psycopg.Connection, schema: str) -> str:
    row = conn.execute(
        load_sql("maintenance/cron_target"),
        {
            "refresh": f"{schema}.refresh_tenant_metrics_24h()",
            "maintenance": f"{schema}.acgs_partition_maintenance(regclass, interval, integer)",
        },
    ).fetchone()
    assert row is not None
    database, has_refresh, has_maintenance = row
    if not (has_refresh and has_maintenance):
        raise SchemaNotReadyError(
            f"database {database} lacks {schema}.refresh_tenant_metrics_24h() or "
            f"{schema}.acgs_partition_maintenance(): run acgs-db migrate (alembic upgrade head)"
        )
    return str(database)


def _cron_connection(url: str, settings: Settings) -> psycopg.Connection:
    """An autocommit connection to the database where pg_cron lives, checked to be the one."""
    try:
        conn = psycopg.connect(cron_url(url, settings), autocommit=True)
    except psycopg.OperationalError as exc:
        lines = str(exc).strip().splitlines()
        raise ScheduleError(
            f"cannot connect to the pg_cron database {settings.cron_database!r} "
            f"(ACGS_CRON_DATABASE): {lines[0] if lines else type(exc).__name__}"
        ) from exc
    row = conn.execute(load_sql("maintenance/cron_server")).fetchone()
    assert row is not None
    current, configured = row
    if configured is None:
        conn.close()
        raise ConfigurationError(
            "pg_cron is not loaded on this server: add it to shared_preload_libraries, set "
            "cron.database_name, and restart PostgreSQL (apt-get install postgresql-15-cron)"
        )
    if configured != current:
        conn.close()
        raise ConfigurationError(
            f"pg_cron lives in database {configured!r} (cron.database_name), not {current!r}: "
            f"set ACGS_CRON_DATABASE={configured}"
        )
    return conn


def _has_pg_cron(conn: psycopg.Connection) -> bool:
    row = conn.execute(load_sql("maintenance/cron_installed")).fetchone()
    return bool(row and row[0])


def _jobs(conn: psycopg.Connection, names: Iterable[str]) -> list[CronJob]:
    rows = conn.execute(load_sql("maintenance/cron_jobs"), {"names": list(names)}).fetchall()
    return [CronJob(int(r[0]), str(r[1]), r[2], r[3], r[4], bool(r[5])) for r in rows]


def _database_name(url: str) -> str:
    """The database ``url`` names (asking the server when the URL leaves it to a default)."""
    dbname = conninfo_to_dict(url).get("dbname")
    if dbname:
        return str(dbname)
    with psycopg.connect(url) as conn:
        row = conn.execute(load_sql("maintenance/current_database")).fetchone()
        assert row is not None
        return str(row[0])
