"""Operator commands: refresh, refresher, schedule (pg_cron), maintain (pg_partman), recover.

Their output is plain text (``typer.echo``, never wrapped to the terminal's width), so that cron
mails and log files get exactly the lines documented.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated

import typer

from acgs_db import partitions
from acgs_db import schedule as cron
from acgs_db.constants import METRICS_VIEW
from acgs_db.errors import ConfigurationError
from acgs_db.tooling.cli._common import app, run
from acgs_db.tooling.cli._common import one_line as _one_line
from acgs_db.tooling.cli._common import plain_errors as _plain_errors
from acgs_db.tooling.cli._common import settings as _settings
from acgs_db.tooling.devdb import database_url

if TYPE_CHECKING:
    from acgs_db.ingest import RecoveryReport
    from acgs_db.metrics import Metrics
    from acgs_db.refresher import Backlog, MetricsRefresher, RefreshResult
    from acgs_db.settings import Settings


# -- refresh (one shot, for cron) -----------------------------------------------------------


@app.command()
def refresh(
    timeout: Annotated[
        float, typer.Option(help="Seconds the refresh may take before it is cancelled.")
    ] = 900.0,
) -> None:
    """Refresh the 24-hour view once, for cron: one line; exit 0 when refreshed or skipped.

    The line ends with the rollup's backlog: deltas older than the window (a backfill's), which
    the refresh leaves to the refresher's slices and ``acgs-db maintain``. Skipped means another
    process was refreshing at that moment (the refresh takes an advisory lock), which leaves the
    view just as fresh. Any failure prints one line to stderr and exits 1.
    """
    from asyncpg.exceptions import UndefinedFunctionError, UndefinedTableError

    try:
        outcome = run(_refresh_once(_settings(), timeout))
    except Exception as exc:
        missing = isinstance(exc, UndefinedFunctionError | UndefinedTableError)
        hint = " (run acgs-db migrate)" if missing else ""
        typer.echo(f"error: refresh of {METRICS_VIEW} failed: {_one_line(exc)}{hint}", err=True)
        raise typer.Exit(1) from None
    result, backlog = outcome
    if result.refreshed:
        done = f"refreshed {METRICS_VIEW} in {result.duration_s:.3f} s"
    else:
        done = (
            f"skipped: another session is refreshing {METRICS_VIEW} "
            f"(checked in {result.duration_s:.3f} s)"
        )
    typer.echo(f"{done}; {_backlog_line(backlog)}")


def _backlog_line(backlog: Backlog | None) -> str:
    """The rollup's backlog (deltas older than the window, left to slices) in one line."""
    if backlog is None:
        return "rollup backlog: unknown (could not be read)"
    if backlog.oldest_bucket is None:
        return "rollup backlog: none"
    return (
        f"rollup backlog: {backlog.delta_rows} delta rows in {backlog.buckets} hour buckets "
        f"older than the window, oldest {backlog.oldest_bucket.isoformat(timespec='seconds')}"
    )


async def _refresh_once(settings: Settings, limit: float) -> tuple[RefreshResult, Backlog | None]:
    from asyncpg import PostgresError

    from acgs_db.pool import create_pool
    from acgs_db.refresher import MetricsRefresher

    url = await asyncio.to_thread(database_url, settings)
    pool = await create_pool(url, settings=settings, min_size=1, max_size=1)
    try:
        worker = MetricsRefresher(pool, settings=settings, timeout=limit)
        result = await worker.refresh_once()
        try:
            backlog: Backlog | None = await worker.read_backlog()
        except PostgresError:
            backlog = None
        return result, backlog
    finally:
        await pool.close()


# -- refresher (the loop in the foreground) -------------------------------------------------


@app.command()
@_plain_errors
def refresher(
    interval: Annotated[
        float | None,
        typer.Option(help="Seconds between refreshes (default ACGS_REFRESH_INTERVAL).", min=0.01),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(help="Serve Prometheus metrics on 127.0.0.1:PORT/metrics.", min=1),
    ] = None,
    grace: Annotated[
        float, typer.Option(help="Seconds a refresh under way may finish after SIGTERM.")
    ] = 30.0,
    recover: Annotated[
        bool,
        typer.Option(
            help="Also settle, once per interval, prepared bulk-insert parts older than "
            "ACGS_RECOVER_AFTER (needs a role that reads ingest_batches)."
        ),
    ] = True,
) -> None:
    """Refresh the 24-hour view in a loop until SIGTERM or SIGINT (Ctrl-C) stops it cleanly.

    Failures are logged and retried with exponential backoff capped at the interval; the loop
    outlives database restarts. Once per interval it also commits or rolls back the prepared
    parts of multi-connection bulk inserts whose writer died (as ``acgs-db recover``). Logs go
    to stderr.
    """
    settings = _settings()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("acgs_db")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        run(_refresher(settings, interval, metrics_port, grace, recover))
    finally:
        logger.removeHandler(handler)


def _metrics(port: int | None) -> Metrics | None:
    if port is None:
        return None
    from acgs_db.metrics import Metrics

    metrics = Metrics()
    try:
        metrics.serve(port)
    except OSError as exc:
        raise ConfigurationError(f"cannot serve metrics on 127.0.0.1:{port}: {exc}") from exc
    return metrics


async def _refresher(
    settings: Settings, interval: float | None, port: int | None, grace: float, recover: bool
) -> None:
    from acgs_db.pool import create_pool
    from acgs_db.refresher import MetricsRefresher

    metrics = _metrics(port)
    url = await asyncio.to_thread(database_url, settings)
    # min_size=0: the loop starts (and retries) even while the server is down; idle connections
    # are kept between refreshes rather than reopened every interval.
    pool = await create_pool(
        url, settings=settings, min_size=0, max_size=1, max_inactive_connection_lifetime=0
    )
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    worker = MetricsRefresher(pool, interval, settings=settings, metrics=metrics, recover=recover)
    try:
        task = worker.start()
        where = f"; metrics on http://127.0.0.1:{port}/metrics" if port else ""
        typer.echo(f"refresher: refreshing {METRICS_VIEW} every {worker.interval:g} s{where}")
        waiter = asyncio.create_task(stopping.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        await worker.stop(grace)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(pool.close(), timeout=10)
    typer.echo(f"refresher: stopped ({_status_line(worker)})")


def _status_line(worker: MetricsRefresher) -> str:
    s = worker.status
    last = s.last_success.isoformat(timespec="seconds") if s.last_success else "never"
    recovered = (
        f", {s.recovered} prepared parts recovered (last at "
        f"{s.last_recovery.isoformat(timespec='seconds')})"
        if s.last_recovery
        else ""
    )
    return (
        f"{s.refreshes} refreshes, {s.skips} skips, {s.failures} failures, "
        f"last success {last}{recovered}; {s.backlog_slices} backlog slices; "
        + _backlog_line(s.backlog)
    )


# -- schedule (pg_cron) ---------------------------------------------------------------------


@app.command("schedule")
@_plain_errors
def schedule_command(
    pg_cron: Annotated[
        bool, typer.Option("--pg-cron", help="Register (or update) the pg_cron jobs.")
    ] = False,
    unschedule: Annotated[
        bool, typer.Option("--unschedule", help="Remove this database's pg_cron jobs.")
    ] = False,
    every: Annotated[
        str | None,
        typer.Option(help="Refresh schedule: 5min, 1h, ... (default ACGS_REFRESH_INTERVAL)."),
    ] = None,
    maintenance_every: Annotated[
        str, typer.Option(help="Partition maintenance schedule (hourly runs at minute 7).")
    ] = cron.DEFAULT_MAINTENANCE_EVERY,
) -> None:
    """Schedule the refresh and the partition maintenance with pg_cron, or remove them."""
    if pg_cron == unschedule:
        typer.echo("error: choose one of --pg-cron and --unschedule", err=True)
        raise typer.Exit(2)
    settings = _settings()
    url = database_url(settings)
    if unschedule:
        removed = cron.unschedule(url, settings)
        for job in removed:
            typer.echo(f"unscheduled {job.name} (pg_cron job {job.jobid})")
        if not removed:
            typer.echo(f"no acgs-db pg_cron jobs for schema {settings.schema} of this database")
        return
    for job in cron.schedule(url, settings, every=every, maintenance_every=maintenance_every):
        typer.echo(
            f"scheduled {job.name} (pg_cron job {job.jobid}, '{job.schedule}', "
            f"in database {job.database}): {job.command}"
        )


# -- maintain (pg_partman) ------------------------------------------------------------------


@app.command()
@_plain_errors
def maintain() -> None:
    """Partition maintenance now: move rows out of the default partition, premake, retention;
    then settle prepared bulk-insert parts older than ACGS_RECOVER_AFTER, purge batch-ledger
    rows older than ACGS_BATCH_LEDGER_RETENTION (as the refresher's loop does), and fold the
    rollup's backlog (deltas older than the 24-hour window) slice by slice until none is left.

    Rows older than the retention (ACGS_RETENTION, 13 months by default) that sat in the default
    partition are moved into a partition of their own, which retention then drops: they are
    deleted, and the report says how many. Every step waits at most ACGS_LOCK_TIMEOUT for a
    table lock and is retried ACGS_LOCK_RETRIES times; the report says how many retries it took.
    """
    settings = _settings()
    report = partitions.maintain(database_url(settings), settings)
    for line in report.lines():
        typer.echo(line)
    recovered = run(_recover(settings.recover_after))
    for line in _recovery_lines(recovered, settings.recover_after):
        typer.echo(line)
    if settings.batch_ledger_retention > 0:
        purged = run(_purge(settings))
        typer.echo(
            f"purged {purged} batch-ledger rows older than {settings.batch_ledger_retention:g} s"
        )
    folded, backlog = run(_drain_backlog(settings))
    typer.echo(f"folded {folded} backlog delta rows of the rollup")
    typer.echo(_backlog_line(backlog))


async def _drain_backlog(settings: Settings) -> tuple[int, Backlog]:
    """Fold the rollup's whole backlog, slice by slice (each its own transaction)."""
    from acgs_db.pool import create_pool
    from acgs_db.refresher import MetricsRefresher

    url = await asyncio.to_thread(database_url, settings)
    pool = await create_pool(url, settings=settings, min_size=1, max_size=1)
    try:
        worker = MetricsRefresher(pool, settings=settings, recover=False, seal=False)
        folded = await worker.drain_backlog(budget=float("inf"))
        assert worker.status.backlog is not None
        return folded, worker.status.backlog
    finally:
        await pool.close()


def _recovery_lines(report: RecoveryReport, older_than: float) -> list[str]:
    committed, rolled_back = len(report.committed), len(report.rolled_back)
    return [
        f"recovered prepared bulk-insert parts older than {older_than:g} s: committed "
        f"{committed}, rolled back {rolled_back}",
        *(f"committed {gid}" for gid in report.committed),
        *(f"rolled back {gid}" for gid in report.rolled_back),
    ]


@app.command()
@_plain_errors
def recover(
    older_than: Annotated[
        float, typer.Option(help="Only prepared transactions older than this many seconds.")
    ] = 60.0,
) -> None:
    """Finish or roll back multi-connection bulk inserts left prepared by a crashed writer."""
    report = run(_recover(older_than))
    typer.echo(
        f"committed {len(report.committed)}, rolled back {len(report.rolled_back)}"
        " prepared transaction(s)"
    )
    for gid in report.committed:
        typer.echo(f"committed {gid}")
    for gid in report.rolled_back:
        typer.echo(f"rolled back {gid}")


async def _purge(settings: Settings) -> int:
    """One bounded purge of the batch ledger (:meth:`MetricsRefresher.purge_once`)."""
    from acgs_db.pool import create_pool
    from acgs_db.refresher import MetricsRefresher

    pool = await create_pool(settings=settings, min_size=1, max_size=1)
    try:
        return await MetricsRefresher(pool, settings=settings).purge_once()
    finally:
        await pool.close()


async def _recover(older_than: float) -> RecoveryReport:
    from acgs_db.pool import create_pool
    from acgs_db.repository import ValidationRepository

    settings = _settings()
    pool = await create_pool(settings=settings, min_size=1, max_size=2)
    try:
        repo = ValidationRepository(pool, settings)
        return await repo.recover_prepared(timedelta(seconds=older_than))
    finally:
        await pool.close()
