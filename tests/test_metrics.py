"""Prometheus metrics: what the repository and the refresher record into their registry."""

from __future__ import annotations

import asyncpg
import pytest
from conftest import create_login
from prometheus_client import generate_latest

from acgs_db import MetricsRefresher, ValidationRecord, ValidationRepository
from acgs_db.metrics import Metrics
from acgs_db.pool import Pool, create_pool
from acgs_db.settings import Settings


def _sample(metrics: Metrics, name: str, labels: dict[str, str] | None = None) -> float:
    value = metrics.registry.get_sample_value(name, labels or {})
    assert value is not None, name
    return value


async def test_repository_records_statement_durations_and_rows_copied(
    pool: Pool, tenant: str
) -> None:
    metrics = Metrics()
    repo = ValidationRepository(pool, Settings.from_env({}), metrics=metrics)
    await repo.bulk_insert([ValidationRecord(tenant, "d", 0.5)] * 7)
    await repo.history(tenant, "d")
    await repo.history(tenant, "d")
    assert _sample(metrics, "acgs_db_rows_copied_total") == 7
    history = {"statement": "history"}
    assert _sample(metrics, "acgs_db_statement_duration_seconds_count", history) == 2
    assert _sample(metrics, "acgs_db_statement_duration_seconds_sum", history) > 0
    bulk = {"statement": "bulk_insert"}
    assert _sample(metrics, "acgs_db_statement_duration_seconds_count", bulk) == 1


async def test_refresher_records_duration_success_and_fold_lag(
    migrated_database: str, tenant: str
) -> None:
    # A database of its own: the fold lag counts every pending delta, and other tests leave
    # backlog deltas (rows older than the window) in the session database that a refresh keeps.
    async with create_pool(migrated_database, min_size=1, max_size=2) as pool:
        await _refresh_and_read_fold_lag(pool, tenant)


async def _refresh_and_read_fold_lag(pool: Pool, tenant: str) -> None:
    metrics = Metrics()
    await ValidationRepository(pool, Settings.from_env({})).insert(
        ValidationRecord(tenant, "d", 0.5)
    )
    refresher = MetricsRefresher(pool, settings=Settings.from_env({}), metrics=metrics)
    await pool.execute("SELECT pg_sleep(0.05)")
    lag_before = await refresher.read_fold_lag()
    assert lag_before > 0  # the insert above waits in the delta table
    result = await refresher.refresh_once()
    assert result.refreshed
    assert _sample(metrics, "acgs_db_refresh_duration_seconds_count") == 1
    assert _sample(metrics, "acgs_db_refresh_last_success_timestamp_seconds") == pytest.approx(
        result.finished_at.timestamp()
    )
    assert refresher.status.fold_lag_s == 0.0  # the refresh folded everything
    assert _sample(metrics, "acgs_db_rollup_fold_lag_seconds") == 0.0
    assert b"acgs_db_refresh_failures_total 0.0" in generate_latest(metrics.registry)


async def test_refresher_counts_failures(database_url: str) -> None:
    metrics = Metrics()
    broken = await create_pool(
        database_url, min_size=1, max_size=1, server_settings={"search_path": "nowhere"}
    )
    try:
        refresher = MetricsRefresher(broken, settings=Settings.from_env({}), metrics=metrics)
        with pytest.raises(asyncpg.UndefinedFunctionError):
            await refresher.refresh_once()
        assert refresher.status.consecutive_failures == 1
        assert _sample(metrics, "acgs_db_refresh_failures_total") == 1
    finally:
        await broken.close()


async def test_a_refresh_that_cannot_read_the_fold_lag_still_counts(
    migrated_database: str,
) -> None:
    import uuid

    import psycopg

    settings = Settings.from_env({})
    login = f"lagless_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(migrated_database, autocommit=True) as conn:
        login_url = create_login(conn, login, settings.refresher_role)
        conn.execute(
            f'REVOKE EXECUTE ON FUNCTION rollup_fold_lag() FROM "{settings.refresher_role}"'
        )
    try:
        pool = await create_pool(login_url, min_size=1, max_size=1)
        try:
            refresher = MetricsRefresher(pool, settings=settings)
            result = await refresher.refresh_once()
            assert result.refreshed
            assert refresher.status.refreshes == 1 and refresher.status.failures == 0
            assert refresher.status.fold_lag_s is None
        finally:
            await pool.close()
    finally:
        with psycopg.connect(migrated_database, autocommit=True) as conn:
            conn.execute(f'DROP OWNED BY "{login}"')
            conn.execute(f'DROP ROLE "{login}"')
