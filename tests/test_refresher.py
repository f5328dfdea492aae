"""MetricsRefresher against a real server: skips, figures, stop, restarts, status, backoff."""

from __future__ import annotations

import asyncio
import itertools
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from decimal import Decimal

import asyncpg
import psycopg
import pytest
from conftest import start_throwaway_cluster
from faults_support import until

from acgs_db.pool import Pool, create_pool
from acgs_db.refresher import MetricsRefresher
from acgs_db.settings import Settings
from acgs_db.tooling import schema

# Backends holding the refresh's lock: the row 'refresh' of acgs_exclusive (migration 0007),
# locked FOR UPDATE, which holds ROW SHARE on the table until the transaction ends (the fold's
# row is locked by the same transaction).
REFRESH_LOCK_HOLDERS = """
    SELECT pid FROM pg_locks
    WHERE locktype = 'relation' AND granted AND mode = 'RowShareLock'
      AND relation = 'acgs_exclusive'::regclass
"""
VIEW_ROW = """
    SELECT total_validations, failed_validations, constitutional_violations,
           avg_compliance_score, last_updated
    FROM tenant_constitutional_metrics_24h WHERE tenant_id = $1
"""


def _settings() -> Settings:
    return Settings.from_env({})


def _refresher(
    pool: Pool, interval: float = 60.0, backoff_initial: float = 1.0
) -> MetricsRefresher:
    return MetricsRefresher(pool, interval, settings=_settings(), backoff_initial=backoff_initial)


async def _view_row(pool: Pool, tenant: str) -> asyncpg.Record:
    row = await pool.fetchrow(VIEW_ROW, tenant)
    assert row is not None
    return row


async def _lock_holders(pool: Pool) -> list[int]:
    return [r[0] for r in await pool.fetch(REFRESH_LOCK_HOLDERS)]


@contextmanager
def _view_locked(url: str) -> Iterator[psycopg.Connection]:
    """An open transaction that ANALYZEd the view: its lock (SHARE UPDATE EXCLUSIVE) makes a
    refresh wait, holding the refresh's lock, until the transaction ends."""
    with psycopg.connect(url) as conn:
        conn.execute("ANALYZE tenant_constitutional_metrics_24h")
        try:
            yield conn
        finally:
            conn.rollback()


async def _insert(pool: Pool, tenant: str, scores: list[str]) -> None:
    await pool.execute(
        "INSERT INTO constitutional_validations (tenant_id, decision_id, compliance_score,"
        " processing_time_ms, created_at)"
        " SELECT $1, 'd-' || n, s, 10 * n, now() - interval '1 hour'"
        " FROM unnest($2::numeric[]) WITH ORDINALITY AS u(s, n)",
        tenant,
        [Decimal(s) for s in scores],
    )


# -- one refresh at a time ------------------------------------------------------------------


async def test_two_refreshers_at_once_one_refreshes_and_the_other_skips(
    pool: Pool, database_url: str
) -> None:
    first, second = _refresher(pool), _refresher(pool)
    with _view_locked(database_url) as blocker:
        under_way = asyncio.create_task(first.refresh_once())
        await until(lambda: _has_holder(pool))

        skipped = await second.refresh_once()

        assert skipped.refreshed is False
        assert second.status.skips == 1 and second.status.refreshes == 0
        assert second.status.last_success is None  # a skip is not a refresh
        assert second.status.consecutive_failures == 0  # nor a failure
        blocker.rollback()
        done = await under_way
    assert done.refreshed is True
    assert first.status.refreshes == 1 and first.status.skips == 0
    assert await _lock_holders(pool) == []


async def _has_holder(pool: Pool) -> bool:
    return bool(await _lock_holders(pool))


async def test_a_refresh_in_another_session_makes_this_one_skip(
    pool: Pool, database_url: str
) -> None:
    refresher = _refresher(pool)
    with psycopg.connect(database_url) as other:  # refreshed, transaction still open
        assert other.execute("SELECT refresh_tenant_metrics_24h()").fetchone() == (True,)
        assert (await refresher.refresh_once()).refreshed is False
    assert (await refresher.refresh_once()).refreshed is True


# -- figures --------------------------------------------------------------------------------


async def test_a_refresh_after_new_rows_changes_the_tenants_figures(
    pool: Pool, tenant: str
) -> None:
    refresher = _refresher(pool)
    await _insert(pool, tenant, ["0.99", "0.92", "0.50"])
    await refresher.refresh_once()
    total, failed, violations, average, first_update = await _view_row(pool, tenant)
    assert (total, failed, violations) == (3, 2, 1)
    assert average == pytest.approx(Decimal("0.8033"), abs=Decimal("0.0001"))

    await _insert(pool, tenant, ["0.97", "0.10"])
    assert (await _view_row(pool, tenant))[:3] == (3, 2, 1)  # until the next refresh

    await refresher.refresh_once()
    total, failed, violations, average, last_update = await _view_row(pool, tenant)
    assert (total, failed, violations) == (5, 3, 2)
    assert average == pytest.approx(Decimal("0.696"), abs=Decimal("0.0001"))
    assert last_update > first_update


# -- stopping -------------------------------------------------------------------------------


async def test_stop_during_a_refresh_cancels_it_and_leaves_no_lock_held(
    pool: Pool, database_url: str
) -> None:
    refresher = _refresher(pool, interval=60.0)
    with _view_locked(database_url):
        task = refresher.start()
        await until(lambda: _has_holder(pool))
        [holder] = await _lock_holders(pool)
        started = time.monotonic()

        await refresher.stop(grace=0.2)

        assert time.monotonic() - started < 5
        assert task.done() and refresher.status.running is False
        assert refresher.status.failures == 0 and refresher.status.refreshes == 0
        # the server rolled the refresh back: no refresh lock, nothing waiting on the view
        await until(lambda: _nothing_held_by(pool, holder))
    assert (await refresher.refresh_once()).refreshed is True  # the pool is fine too


async def _nothing_held_by(pool: Pool, pid: int) -> bool:
    locks = await pool.fetchval(
        "SELECT count(*) FROM pg_locks WHERE pid = $1"
        " AND (relation = 'acgs_exclusive'::regclass OR NOT granted)",
        pid,
    )
    return bool(locks == 0 and await _lock_holders(pool) == [])


async def test_stop_lets_a_refresh_under_way_finish_within_the_grace(
    pool: Pool, database_url: str
) -> None:
    refresher = _refresher(pool, interval=60.0)
    with _view_locked(database_url) as blocker:
        refresher.start()
        await until(lambda: _has_holder(pool))
        stopping = asyncio.create_task(refresher.stop(grace=10))
        await asyncio.sleep(0.2)
        assert not stopping.done()
        blocker.rollback()
        await stopping
    assert refresher.status.refreshes == 1 and refresher.status.running is False
    assert await _lock_holders(pool) == []


# -- status, failures and backoff -----------------------------------------------------------


@pytest.fixture
async def empty_pool(fresh_database: str) -> AsyncIterator[Pool]:
    """A pool on a database without the schema, where every refresh fails."""
    p = await create_pool(fresh_database, min_size=1, max_size=2)
    yield p
    await p.close()


async def test_status_counts_failures_until_a_success_resets_them(
    empty_pool: Pool, fresh_database: str
) -> None:
    refresher = _refresher(empty_pool)
    for attempt in (1, 2):
        with pytest.raises(asyncpg.UndefinedFunctionError):
            await refresher.refresh_once()
        assert refresher.status.consecutive_failures == attempt
    assert refresher.status.failures == 2
    assert refresher.status.last_success is None
    assert refresher.status.last_error is not None
    assert refresher.status.last_error.startswith("UndefinedFunctionError: function")

    await asyncio.to_thread(schema.upgrade, fresh_database)
    result = await refresher.refresh_once()

    status = refresher.status
    assert result.refreshed is True
    assert status.consecutive_failures == 0 and status.failures == 2
    assert status.last_error is None
    assert status.last_success == result.finished_at
    assert status.last_duration_s == result.duration_s and 0 < result.duration_s < 10
    assert status.refreshes == 1


async def test_failures_back_off_exponentially_up_to_the_interval(
    empty_pool: Pool, fresh_database: str
) -> None:
    refresher = _refresher(empty_pool, interval=0.8, backoff_initial=0.1)
    attempts: list[float] = []

    def failed_again() -> bool:
        if refresher.status.failures > len(attempts):
            attempts.append(time.monotonic())
        return len(attempts) >= 6

    refresher.start()
    await until(failed_again, within=20)
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    # 0.1, 0.2, 0.4 s, then capped at the 0.8 s interval; each +-20 % jitter, plus the query
    for gap, expected in zip(gaps, [0.1, 0.2, 0.4, 0.8, 0.8], strict=True):
        assert 0.8 * expected - 0.01 <= gap <= 1.2 * expected + 0.2, gaps
    assert refresher.status.running and refresher.status.consecutive_failures >= 6

    await asyncio.to_thread(schema.upgrade, fresh_database)
    await until(lambda: refresher.status.refreshes >= 1, within=5)
    assert refresher.status.consecutive_failures == 0
    await refresher.stop()


# -- a server that goes away ----------------------------------------------------------------


@pytest.mark.faults
async def test_the_loop_outlives_stopping_and_starting_the_server() -> None:
    cluster = await asyncio.to_thread(start_throwaway_cluster)
    try:
        url = cluster.url()
        await asyncio.to_thread(schema.upgrade, url)
        pool = await create_pool(url, min_size=1, max_size=1)
        refresher = _refresher(pool, interval=0.2, backoff_initial=0.05)
        refresher.start()
        await until(lambda: refresher.status.refreshes >= 1)

        await asyncio.to_thread(cluster.stop)
        await until(lambda: refresher.status.consecutive_failures >= 3)
        assert refresher.status.running
        refreshes_before = refresher.status.refreshes

        await asyncio.to_thread(cluster.start)
        await until(lambda: refresher.status.refreshes > refreshes_before, within=30)
        assert refresher.status.consecutive_failures == 0
        assert refresher.status.running

        await refresher.stop()
        await pool.close()
    finally:
        await asyncio.to_thread(cluster.destroy)
        shutil.rmtree(cluster.root.parent, ignore_errors=True)
