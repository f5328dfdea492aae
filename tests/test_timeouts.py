"""Server-side timeouts of pool sessions; COPY and the refresh keep bounds of their own; the
refresher settles prepared bulk-insert parts left by a dead writer."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import psycopg
import pytest
from asyncpg.exceptions import InternalClientError
from conftest import count_rows, prepare_part
from faults_support import until

from acgs_db.errors import BulkInsertError, ConfigurationError
from acgs_db.pool import create_pool
from acgs_db.records import ValidationRecord
from acgs_db.refresher import MetricsRefresher
from acgs_db.repository import ValidationRepository
from acgs_db.settings import Settings
from acgs_db.timeouts import milliseconds
from acgs_db.tooling import schema


def _settings(**overrides: float) -> Settings:
    return Settings.from_env({}, **overrides)


# -- settings -------------------------------------------------------------------------------


def test_timeout_settings_default_and_parse() -> None:
    s = Settings.from_env({})
    assert (s.lock_timeout, s.lock_retries, s.statement_timeout) == (2.0, 5, 30.0)
    assert (s.idle_in_transaction_timeout, s.recover_after) == (60.0, 60.0)
    s = Settings.from_env(
        {
            "ACGS_LOCK_TIMEOUT": "0.5",
            "ACGS_LOCK_RETRIES": "0",
            "ACGS_STATEMENT_TIMEOUT": "0",
            "ACGS_IDLE_IN_TRANSACTION_TIMEOUT": "15",
            "ACGS_RECOVER_AFTER": "120",
        }
    )
    assert (s.lock_timeout, s.lock_retries, s.statement_timeout) == (0.5, 0, 0.0)
    assert (s.idle_in_transaction_timeout, s.recover_after) == (15.0, 120.0)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ACGS_LOCK_TIMEOUT", "0"),
        ("ACGS_LOCK_TIMEOUT", "-1"),
        ("ACGS_LOCK_TIMEOUT", "61"),
        ("ACGS_LOCK_TIMEOUT", "nan"),
        ("ACGS_LOCK_TIMEOUT", "2s"),
        ("ACGS_LOCK_RETRIES", "-1"),
        ("ACGS_LOCK_RETRIES", "1.5"),
        ("ACGS_STATEMENT_TIMEOUT", "-0.1"),
        ("ACGS_STATEMENT_TIMEOUT", "inf"),
        ("ACGS_IDLE_IN_TRANSACTION_TIMEOUT", "soon"),
        ("ACGS_RECOVER_AFTER", "-5"),
    ],
)
def test_bad_timeout_settings_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        Settings.from_env({name: value})


def test_timeouts_become_whole_milliseconds_and_zero_means_none() -> None:
    assert [milliseconds(s) for s in (None, 0, 0.0004, 0.2, 30, 10 * 365 * 86400.0)] == [
        "0",
        "0",
        "1",
        "200",
        "30000",
        "0",  # beyond PostgreSQL's largest timeout: none
    ]


# -- pool sessions --------------------------------------------------------------------------


async def test_pool_sessions_carry_the_server_side_timeouts(database_url: str) -> None:
    settings = _settings(statement_timeout=7, idle_in_transaction_timeout=9.5)
    pool = await create_pool(database_url, settings=settings, min_size=1, max_size=2)
    try:
        assert await pool.fetchval("SHOW statement_timeout") == "7s"
        assert await pool.fetchval("SHOW idle_in_transaction_session_timeout") == "9500ms"
    finally:
        await pool.close()
    default = await create_pool(database_url, settings=_settings(), min_size=1, max_size=1)
    try:
        assert await default.fetchval("SHOW statement_timeout") == "30s"
        assert await default.fetchval("SHOW idle_in_transaction_session_timeout") == "1min"
    finally:
        await default.close()


async def test_a_statement_beyond_the_statement_timeout_is_cancelled_by_the_server(
    database_url: str,
) -> None:
    pool = await create_pool(
        database_url, settings=_settings(statement_timeout=0.2), min_size=1, max_size=1
    )
    try:
        with pytest.raises(asyncpg.QueryCanceledError, match="statement timeout"):
            await pool.fetchval("SELECT pg_sleep(2)")
        assert await pool.fetchval("SELECT 1") == 1  # the session goes on
    finally:
        await pool.close()


async def test_a_session_idle_in_a_transaction_is_ended_by_the_server(
    database_url: str,
) -> None:
    pool = await create_pool(
        database_url, settings=_settings(idle_in_transaction_timeout=0.3), min_size=1, max_size=1
    )
    try:
        async with pool.acquire() as conn:
            await conn.execute("BEGIN")
            pid = await conn.fetchval("SELECT pg_backend_pid()")
            await conn.fetchval("SELECT count(*) FROM constitutional_validations")

            async def gone() -> bool:
                with psycopg.connect(database_url, autocommit=True) as other:
                    row = other.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)
                    ).fetchone()
                return row == (0,)

            await until(gone, within=10)  # its locks went with it
            # How asyncpg reports a connection its server ended varies with timing.
            ended = (asyncpg.PostgresError, asyncpg.InterfaceError, InternalClientError, OSError)
            with pytest.raises(ended):
                await conn.fetchval("SELECT 1")
        assert await pool.fetchval("SELECT 1") == 1  # the pool replaced it
    finally:
        await pool.close()


def _records(tenant: str, n: int) -> list[ValidationRecord]:
    return [ValidationRecord(tenant, f"d-{i}", 0.5, {"i": i}, i) for i in range(n)]


async def _slowly(records: list[ValidationRecord], pause: float) -> AsyncIterator[ValidationRecord]:
    for i, record in enumerate(records):
        if i % 10 == 0:
            await asyncio.sleep(pause)
        yield record


async def test_a_bulk_insert_longer_than_the_statement_timeout_is_not_cut(
    database_url: str, tenant: str
) -> None:
    """Needs the COPY transaction's set_config (acgs_db/ingest.py): the COPY streams for about
    a second under a session statement_timeout of 200 ms."""
    settings = _settings(statement_timeout=0.2)
    pool = await create_pool(database_url, settings=settings, min_size=1, max_size=3)
    try:
        repo = ValidationRepository(pool, settings)
        started = datetime.now(UTC)
        assert await repo.bulk_insert(_slowly(_records(tenant, 200), 0.05)) == 200
        assert (datetime.now(UTC) - started).total_seconds() > 0.2 * 3
        assert await count_rows(pool, tenant) == 200
        # ...and over two connections (two-phase commit) as well
        other = f"{tenant}-2pc"
        records = _records(other, 400)
        assert await repo.bulk_insert(_slowly(records, 0.05), connections=2) == 400
        assert await count_rows(pool, other) == 400
        with pytest.raises(asyncpg.QueryCanceledError):  # the session keeps its own bound
            await pool.fetchval("SELECT pg_sleep(1)")
    finally:
        await pool.close()


async def test_a_bulk_insert_keeps_the_copy_timeout_as_its_bound(
    database_url: str, tenant: str
) -> None:
    settings = _settings(statement_timeout=30, copy_timeout=0.3)
    pool = await create_pool(database_url, settings=settings, min_size=1, max_size=1)
    try:
        repo = ValidationRepository(pool, settings)
        with pytest.raises((asyncpg.PostgresError, TimeoutError, BulkInsertError)):
            await repo.bulk_insert(_slowly(_records(tenant, 200), 0.05))
        assert await count_rows(pool, tenant) == 0
    finally:
        await pool.close()


# -- the refresher --------------------------------------------------------------------------


async def test_the_refresh_runs_longer_than_the_sessions_statement_timeout(
    database_url: str,
) -> None:
    pool = await create_pool(
        database_url, settings=_settings(statement_timeout=0.2), min_size=1, max_size=1
    )
    try:
        refresher = MetricsRefresher(pool, 60, settings=_settings(), timeout=30)
        with psycopg.connect(database_url) as blocker:
            # Holds SHARE UPDATE EXCLUSIVE on the view: the refresh waits for it.
            blocker.execute("ANALYZE tenant_constitutional_metrics_24h")
            task = asyncio.create_task(refresher.refresh_once())
            await asyncio.sleep(0.8)
            assert not task.done()
            blocker.rollback()
        result = await task
        assert result.refreshed and result.duration_s > 0.2
        assert await pool.fetchval("SHOW statement_timeout") == "200ms"  # the session's again
    finally:
        await pool.close()


async def _prepare_part(url: str, tenant: str, token: uuid.UUID, part: int, ledger: bool) -> None:
    conn = await asyncpg.connect(url)
    try:
        await prepare_part(conn, tenant, token, part, ledger=ledger)
    finally:
        await conn.close()


async def test_the_refresher_loop_settles_old_prepared_parts_once_per_interval(
    fresh_database: str, tenant: str
) -> None:
    await asyncio.to_thread(schema.upgrade, fresh_database)
    decided, undecided = uuid.uuid4(), uuid.uuid4()
    for token, ledger in ((decided, True), (undecided, False)):
        await _prepare_part(fresh_database, tenant, token, 0, ledger)
        await _prepare_part(fresh_database, tenant, token, 1, False)
    settings = _settings(recover_after=0)
    pool = await create_pool(fresh_database, settings=settings, min_size=1, max_size=2)
    try:
        await pool.execute(f"COMMIT PREPARED 'acgs_db:{decided}:0'")  # decided, then it died
        refresher = MetricsRefresher(pool, 0.2, settings=settings)
        assert refresher.status.last_recovery is None
        refresher.start()
        await until(lambda: refresher.status.last_recovery is not None, within=20)
        status = refresher.status
        assert (status.last_recovery_committed, status.last_recovery_rolled_back) == (1, 2)
        assert status.recovered == 3 and status.last_recovery_error is None
        first = status.last_recovery
        await until(lambda: refresher.status.last_recovery != first, within=20)  # again later
        assert refresher.status.recovered == 3  # nothing left to settle
        assert refresher.status.refreshes >= 2
        await refresher.stop()
        assert await pool.fetchval("SELECT count(*) FROM pg_prepared_xacts") == 0
        assert await count_rows(pool, tenant) == 20  # both parts of the decided batch
    finally:
        await pool.close()


async def test_a_refresher_told_not_to_recover_leaves_prepared_parts_alone(
    fresh_database: str, tenant: str
) -> None:
    await asyncio.to_thread(schema.upgrade, fresh_database)
    token = uuid.uuid4()
    await _prepare_part(fresh_database, tenant, token, 0, True)
    settings = _settings(recover_after=0)
    pool = await create_pool(fresh_database, settings=settings, min_size=1, max_size=2)
    try:
        refresher = MetricsRefresher(pool, 0.1, settings=settings, recover=False)
        refresher.start()
        await until(lambda: refresher.status.refreshes >= 3, within=20)
        await refresher.stop()
        assert refresher.status.last_recovery is None
        assert await pool.fetchval("SELECT count(*) FROM pg_prepared_xacts") == 1
    finally:
        await pool.execute(f"ROLLBACK PREPARED 'acgs_db:{token}:0'")
        await pool.close()
