"""Scheduled refresh of ``tenant_constitutional_metrics_24h``.

The refresh itself is the database function ``refresh_tenant_metrics_24h()``: it locks a row of
the owner-only ``acgs_exclusive`` (so one refresh runs at a time across every process and host;
the others return false at once), refreshes plainly while the view is unpopulated and
CONCURRENTLY afterwards. This module calls it once (:meth:`MetricsRefresher.refresh_once`, for
cron) or in a loop with backoff (:meth:`MetricsRefresher.start`). The refresh runs in a
transaction of its own whose ``statement_timeout`` is the refresh's timeout (pool sessions run
under the shorter ACGS_STATEMENT_TIMEOUT).

The loop also settles, at most once per interval, the prepared parts of multi-connection bulk
inserts whose writer died (:meth:`MetricsRefresher.recover_once`, the repository's
``recover_prepared`` for parts older than ACGS_RECOVER_AFTER), so that none holds its locks
and rows until an operator runs ``acgs-db recover``; and it seals the tamper-evident ledger's
final entries into a block (:meth:`MetricsRefresher.seal_once`, ``ledger_seal()``), so that the
digest an operator keeps elsewhere (``acgs-db ledger digest``) covers recent writes; and it
purges batch-ledger rows older than ACGS_BATCH_LEDGER_RETENTION
(:meth:`MetricsRefresher.purge_once`, ``ingest_batches_purge()``, in bounded steps).

The refresh folds only the pending deltas the 24-hour window needs (migration 0014). Between
refreshes the loop folds the older ones (a backfill's: the backlog) in bounded slices of
ACGS_BACKLOG_SLICE_BUCKETS hour buckets (:meth:`MetricsRefresher.drain_backlog`), each in its own
transaction, for at most half the interval, so that the next refresh waits for one slice at
worst; the backlog left (delta rows, buckets, oldest bucket) is in :attr:`status` and the
Prometheus metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from acgs_db.resources import load_sql
from acgs_db.settings import Settings
from acgs_db.timeouts import set_statement_timeout

if TYPE_CHECKING:
    from acgs_db.ingest import RecoveryReport
    from acgs_db.metrics import Metrics
    from acgs_db.pool import Pool

log = logging.getLogger(__name__)

PURGE_STEP = 5000
"""Batch-ledger rows one purge step deletes at most (one short transaction each)."""
PURGE_STEPS = 20
"""Steps per purge: at most PURGE_STEP x PURGE_STEPS rows per refresher interval."""


@dataclass(frozen=True, slots=True)
class RefreshResult:
    """Outcome of one refresh attempt."""

    refreshed: bool
    """False when another process held the refresh lock, so this one skipped."""
    duration_s: float
    finished_at: datetime


@dataclass(frozen=True, slots=True)
class Backlog:
    """The rollup's pending deltas older than what the 24-hour window needs."""

    delta_rows: int
    buckets: int
    oldest_bucket: datetime | None
    """The oldest hour bucket waiting (None: no backlog)."""


@dataclass(slots=True)
class RefresherStatus:
    """What the refresher has done so far (read it for health checks)."""

    last_success: datetime | None = None
    last_duration_s: float | None = None
    consecutive_failures: int = 0
    failures: int = 0
    refreshes: int = 0
    skips: int = 0
    last_error: str | None = None
    running: bool = False
    fold_lag_s: float | None = None
    """Age of the oldest write not yet folded into the rollup, read after each attempt."""
    last_recovery: datetime | None = None
    """When the loop last settled left-over prepared parts of bulk inserts (None: never)."""
    last_recovery_committed: int = 0
    """Prepared parts that recovery committed (their batch was decided), last time."""
    last_recovery_rolled_back: int = 0
    """Prepared parts that recovery rolled back (their batch was not decided), last time."""
    recovered: int = 0
    """Prepared parts settled (committed or rolled back) since the start."""
    recovery_failures: int = 0
    last_recovery_error: str | None = None
    last_seal: datetime | None = None
    """When the loop last sealed the tamper-evident ledger's final entries (None: never)."""
    last_sealed_block: int | None = None
    """The block that seal made (None when nothing was final yet)."""
    seal_failures: int = 0
    last_seal_error: str | None = None
    last_purge: datetime | None = None
    """When the loop last purged old batch-ledger rows (None: never)."""
    last_purged: int = 0
    """Batch-ledger rows that purge deleted."""
    purged: int = 0
    """Batch-ledger rows purged since the start."""
    purge_failures: int = 0
    last_purge_error: str | None = None
    backlog: Backlog | None = None
    """The rollup's backlog (deltas older than the window), read after each drain (None: not
    read yet, or the read failed)."""
    backlog_slices: int = 0
    """Backlog slices folded since the start."""
    backlog_folded_rows: int = 0
    """Delta rows folded by backlog slices since the start."""
    backlog_failures: int = 0
    last_backlog_error: str | None = None


class MetricsRefresher:
    """Refreshes the 24-hour metrics view every ``interval`` seconds.

    ``start()`` runs the loop as an asyncio task and ``await stop()`` ends it: a refresh under
    way may finish for ``grace`` seconds, after which it is cancelled (asyncpg sends a cancel
    request, so the server rolls back and releases its locks). Failures are logged, counted
    and retried with exponential backoff capped at the interval; the loop outlives server
    restarts because the pool replaces broken connections.
    """

    def __init__(
        self,
        pool: Pool,
        interval: float | None = None,
        *,
        settings: Settings | None = None,
        timeout: float = 900.0,
        backoff_initial: float = 1.0,
        metrics: Metrics | None = None,
        recover: bool = True,
        seal: bool = True,
        purge: bool = True,
    ) -> None:
        self._pool = pool
        self._settings = settings or Settings.from_env()
        self.interval = self._settings.refresh_interval if interval is None else interval
        if self.interval <= 0:
            raise ValueError("interval must be positive")
        self._timeout = timeout
        self._backoff_initial = backoff_initial
        self._metrics = metrics
        self._recover = recover
        self._recovered_at: float | None = None
        self._seal = seal
        self._sealed_at: float | None = None
        self._purge = purge
        self._purged_at: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.status = RefresherStatus()

    async def refresh_once(self) -> RefreshResult:
        """Refresh now (or skip when another refresher holds the lock); raise on failure."""
        started = time.perf_counter()
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await set_statement_timeout(conn, self._timeout)
                refreshed = bool(
                    await conn.fetchval(load_sql("queries/refresh"), timeout=self._timeout)
                )
        except Exception as exc:
            self._record_failure(exc)
            raise
        result = RefreshResult(refreshed, time.perf_counter() - started, datetime.now(UTC))
        self._record_success(result)
        try:
            await self.read_fold_lag()
        except Exception as exc:  # the refresh itself succeeded: report, don't fail it
            self.status.fold_lag_s = None
            log.warning("could not read the rollup's fold lag: %s", _first_line(exc))
        return result

    async def read_fold_lag(self) -> float:
        """Read (and record) the age in seconds of the oldest write not yet folded."""
        lag = float(await self._pool.fetchval(load_sql("queries/fold_lag")))
        self.status.fold_lag_s = lag
        if self._metrics is not None:
            self._metrics.fold_lag.set(lag)
        return lag

    async def read_backlog(self) -> Backlog:
        """Read (and record) the rollup's backlog: ``rollup_backlog()``."""
        row = await self._pool.fetchrow(load_sql("queries/backlog"))
        assert row is not None
        backlog = Backlog(int(row["delta_rows"]), int(row["buckets"]), row["oldest_bucket"])
        self.status.backlog = backlog
        if self._metrics is not None:
            self._metrics.observe_backlog(backlog)
        return backlog

    async def fold_backlog_slice(self) -> int:
        """Fold one slice of the backlog now (the ACGS_BACKLOG_SLICE_BUCKETS oldest hour buckets
        below the window's line) in a transaction of its own; return the delta rows folded."""
        async with self._pool.acquire() as conn, conn.transaction():
            await set_statement_timeout(conn, self._timeout)
            folded = int(
                await conn.fetchval(
                    load_sql("queries/backlog_slice"),
                    self._settings.backlog_slice_buckets,
                    timeout=self._timeout,
                )
            )
        self.status.backlog_slices += 1
        self.status.backlog_folded_rows += folded
        if self._metrics is not None:
            self._metrics.backlog_slices.inc()
            self._metrics.backlog_folded_rows.inc(folded)
        return folded

    async def drain_backlog(self, budget: float | None = None) -> int:
        """Fold backlog slices until none is left, ``budget`` seconds (default: half the
        interval) have passed or :meth:`stop` was called, then read the backlog; return the
        delta rows folded. A slice under way finishes; a failure is recorded and raised."""
        limit = self.interval / 2 if budget is None else budget
        started = time.monotonic()
        folded = 0
        try:
            while True:
                rows = await self.fold_backlog_slice()
                folded += rows
                spent = time.monotonic() - started
                if rows == 0 or spent >= limit or self._stopping.is_set():
                    break
            await self.read_backlog()
        except Exception as exc:
            self.status.backlog_failures += 1
            self.status.last_backlog_error = f"{type(exc).__name__}: {exc}"
            raise
        self.status.last_backlog_error = None
        return folded

    async def _drain_between_refreshes(self) -> None:
        """The loop's backlog step: failures are logged, the next refresh goes on."""
        try:
            folded = await self.drain_backlog()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("folding the rollup's backlog failed: %s", _first_line(exc))
            return
        backlog = self.status.backlog
        if folded and backlog is not None:
            log.info(
                "folded %d backlog delta rows; %d rows in %d buckets left",
                folded,
                backlog.delta_rows,
                backlog.buckets,
            )

    async def recover_once(self) -> RecoveryReport:
        """Settle prepared parts older than ACGS_RECOVER_AFTER now (commit those of decided
        batches, roll back the others) and record it in :attr:`status`; raise on failure."""
        from acgs_db.repository import ValidationRepository

        self._recovered_at = time.monotonic()
        older_than = timedelta(seconds=self._settings.recover_after)
        status = self.status
        try:
            repo = ValidationRepository(self._pool, self._settings)
            report = await repo.recover_prepared(older_than)
        except Exception as exc:
            status.recovery_failures += 1
            status.last_recovery_error = f"{type(exc).__name__}: {exc}"
            raise
        status.last_recovery = datetime.now(UTC)
        status.last_recovery_committed = len(report.committed)
        status.last_recovery_rolled_back = len(report.rolled_back)
        status.recovered += len(report.committed) + len(report.rolled_back)
        status.last_recovery_error = None
        return report

    async def _recover_when_due(self) -> None:
        """Recovery at most once per interval (the loop runs more often after failures)."""
        due = self._recovered_at is None or time.monotonic() - self._recovered_at >= self.interval
        if not (self._recover and due):
            return
        try:
            report = await self.recover_once()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("recovery of prepared bulk-insert parts failed: %s", _first_line(exc))
            return
        for gid in report.committed:
            log.warning("recovered prepared bulk-insert part %s: committed", gid)
        for gid in report.rolled_back:
            log.warning("recovered prepared bulk-insert part %s: rolled back", gid)

    async def seal_once(self) -> int | None:
        """Seal the ledger's final entries into a block now (``ledger_seal()``, migration 0010)
        and record it in :attr:`status`; return the block's id (None: nothing final yet)."""
        self._sealed_at = time.monotonic()
        status = self.status
        try:
            row = await self._pool.fetchrow(load_sql("ledger/seal"))
        except Exception as exc:
            status.seal_failures += 1
            status.last_seal_error = f"{type(exc).__name__}: {exc}"
            raise
        status.last_seal = datetime.now(UTC)
        status.last_sealed_block = None if row is None else int(row[0])
        status.last_seal_error = None
        return status.last_sealed_block

    async def _seal_when_due(self) -> None:
        """A seal at most once per interval, like the recovery (failures are logged)."""
        due = self._sealed_at is None or time.monotonic() - self._sealed_at >= self.interval
        if not (self._seal and due):
            return
        try:
            block = await self.seal_once()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("sealing the ledger failed: %s", _first_line(exc))
            return
        if block is not None:
            log.info("sealed ledger block %d", block)

    async def purge_once(self) -> int:
        """Delete batch-ledger rows older than ACGS_BATCH_LEDGER_RETENTION now, in steps of at
        most :data:`PURGE_STEP` rows (each its own transaction), :data:`PURGE_STEPS` at most;
        rows of batches with a part still prepared are kept (``ingest_batches_purge()``).
        Records it in :attr:`status`; returns the rows deleted (0 when retention is 0)."""
        self._purged_at = time.monotonic()
        retention = self._settings.batch_ledger_retention
        status = self.status
        total = 0
        try:
            if retention > 0:
                for _ in range(PURGE_STEPS):
                    step = int(
                        await self._pool.fetchval(
                            load_sql("queries/batch_purge"), retention, PURGE_STEP
                        )
                    )
                    total += step
                    if step < PURGE_STEP:
                        break
        except Exception as exc:
            status.purge_failures += 1
            status.last_purge_error = f"{type(exc).__name__}: {exc}"
            status.purged += total
            raise
        status.last_purge = datetime.now(UTC)
        status.last_purged = total
        status.purged += total
        status.last_purge_error = None
        return total

    async def _purge_when_due(self) -> None:
        """A purge at most once per interval, like the recovery (failures are logged)."""
        due = self._purged_at is None or time.monotonic() - self._purged_at >= self.interval
        if not (self._purge and due):
            return
        try:
            purged = await self.purge_once()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("purging the batch ledger failed: %s", _first_line(exc))
            return
        if purged:
            log.info("purged %d batch-ledger rows", purged)

    def _record_success(self, result: RefreshResult) -> None:
        status = self.status
        status.consecutive_failures = 0
        status.last_error = None
        if result.refreshed:
            status.refreshes += 1
            status.last_success = result.finished_at
            status.last_duration_s = result.duration_s
        else:
            status.skips += 1
        if self._metrics is not None:
            self._metrics.observe_refresh(result)

    def _record_failure(self, exc: BaseException) -> None:
        status = self.status
        status.failures += 1
        status.consecutive_failures += 1
        status.last_error = f"{type(exc).__name__}: {exc}"
        if self._metrics is not None:
            self._metrics.refresh_failures.inc()

    def _delay_after_failure(self) -> float:
        exponent = min(self.status.consecutive_failures - 1, 16)
        delay = min(self.interval, self._backoff_initial * 2**exponent)
        return float(delay * random.uniform(0.8, 1.2))

    async def run(self) -> None:
        """The loop itself: refresh, wait, repeat until :meth:`stop`."""
        self.status.running = True
        try:
            while not self._stopping.is_set():
                try:
                    result = await self.refresh_once()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning(
                        "refresh of the 24-hour view failed (%d in a row): %s",
                        self.status.consecutive_failures,
                        _first_line(exc),
                    )
                    delay = self._delay_after_failure()
                else:
                    if result.refreshed:
                        log.info("refreshed the 24-hour view in %.3f s", result.duration_s)
                    else:
                        log.info("skipped: another process is refreshing the 24-hour view")
                    delay = self.interval
                await self._recover_when_due()
                await self._seal_when_due()
                await self._purge_when_due()
                if not self._stopping.is_set():
                    await self._drain_between_refreshes()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=delay)
        finally:
            self.status.running = False

    def start(self) -> asyncio.Task[None]:
        """Run the loop as a task of the current event loop."""
        if self._task is not None and not self._task.done():
            raise RuntimeError("the refresher is already running")
        self._stopping.clear()
        self._task = asyncio.create_task(self.run(), name="acgs-db-refresher")
        return self._task

    async def stop(self, grace: float = 30.0) -> None:
        """End the loop: let a refresh under way finish for ``grace`` seconds, then cancel it."""
        self._stopping.set()
        task = self._task
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=grace)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        finally:
            self._task = None


def _first_line(exc: BaseException) -> str:
    """The first line of an error (asyncpg appends DETAIL and HINT lines)."""
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__
