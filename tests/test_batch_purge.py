"""The batch ledger's purge (migration 0012, ``ingest_batches_purge()``, the refresher's
``purge_once``) against a real server: old rows go, recent ones stay, a batch with a part still
prepared keeps its row whatever its age, each step is bounded, and the retention is checked
on both sides (ACGS_BATCH_LEDGER_RETENTION and the function itself)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import asyncpg
import psycopg
import pytest
from conftest import create_login, prepare_part

from acgs_db.errors import ConfigurationError
from acgs_db.ingest import RecoveryReport
from acgs_db.pool import Pool, create_pool
from acgs_db.refresher import MetricsRefresher
from acgs_db.repository import ValidationRepository
from acgs_db.settings import MIN_BATCH_LEDGER_RETENTION, Settings

DAY = 86400.0


def _settings(retention: float = DAY) -> Settings:
    return Settings.from_env({}, batch_ledger_retention=retention)


@pytest.fixture
async def pool(migrated_database: str) -> AsyncIterator[Pool]:
    """A pool on a database of this test's own (the purge's counts are exact)."""
    pool = await create_pool(migrated_database, settings=_settings(), min_size=1, max_size=4)
    try:
        yield pool
    finally:
        await pool.close()


async def _add(pool: Pool, prefix: str, count: int, age: str) -> None:
    """``count`` ledger rows ``<prefix>-<i>`` committed ``age`` ago (older for larger i)."""
    await pool.execute(
        "INSERT INTO ingest_batches (batch_id, rows, committed_at)"
        " SELECT $1 || '-' || i, 1, now() - $2::text::interval - i * interval '1 second'"
        " FROM generate_series(1, $3) AS i",
        prefix,
        age,
        count,
    )


async def _ids(pool: Pool) -> set[str]:
    return {row[0] for row in await pool.fetch("SELECT batch_id FROM ingest_batches")}


def _refresher(pool: Pool, retention: float = DAY) -> MetricsRefresher:
    return MetricsRefresher(pool, 60.0, settings=_settings(retention))


async def test_rows_older_than_the_retention_are_purged_and_recent_ones_kept(
    pool: Pool,
) -> None:
    await _add(pool, "old", 30, "2 days")
    await _add(pool, "recent", 5, "1 hour")
    refresher = _refresher(pool)
    assert await refresher.purge_once() == 30
    assert await _ids(pool) == {f"recent-{i}" for i in range(1, 6)}
    status = refresher.status
    assert (status.last_purged, status.purged, status.purge_failures) == (30, 30, 0)
    assert status.last_purge is not None and status.last_purge_error is None
    assert await refresher.purge_once() == 0  # nothing old is left


async def test_a_batch_with_a_part_still_prepared_keeps_its_row(
    pool: Pool, migrated_database: str, tenant: str
) -> None:
    """Batch ``kept``: part 0 committed (its ledger row, the commit decision, two days old),
    part 1 still prepared. Its row survives the purge, and recover() then commits part 1
    (decided); once nothing is prepared the next purge deletes the row. An old token without
    a prepared part is purged like any row."""
    kept, gone = uuid.uuid4(), uuid.uuid4()
    await pool.execute(
        "INSERT INTO ingest_batches (batch_id, rows, parts, token, committed_at)"
        " VALUES ($1::uuid::text, 20, 2, $1::uuid, now() - interval '2 days'),"
        "        ($2::uuid::text, 20, 2, $2::uuid, now() - interval '2 days')",
        kept,
        gone,
    )
    part = await asyncpg.connect(migrated_database)
    try:
        await prepare_part(part, tenant, kept, 1, ledger=False)
    finally:
        await part.close()
    try:
        assert await _refresher(pool).purge_once() == 1
        assert await _ids(pool) == {str(kept)}
        report = await ValidationRepository(pool, _settings()).recover_prepared(timedelta(0))
        assert report == RecoveryReport(committed=[f"acgs_db:{kept}:1"], rolled_back=[])
    finally:  # a failed test leaves no prepared part behind (it would block the drop)
        if await pool.fetchval(
            "SELECT count(*) FROM pg_prepared_xacts WHERE gid = $1", f"acgs_db:{kept}:1"
        ):
            await pool.execute(f"ROLLBACK PREPARED 'acgs_db:{kept}:1'")
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM constitutional_validations WHERE tenant_id = $1", tenant
        )
        == 10
    )
    assert await _refresher(pool).purge_once() == 1
    assert await _ids(pool) == set()


async def test_each_step_is_bounded_and_takes_the_oldest_first(pool: Pool) -> None:
    await _add(pool, "old", 12, "2 days")
    purged = await pool.fetchval("SELECT ingest_batches_purge(interval '1 day', 5)")
    assert purged == 5
    # old-12 is the oldest (2 days + 12 s): old-8 .. old-12 went first.
    assert await _ids(pool) == {f"old-{i}" for i in range(1, 8)}


async def test_a_retention_of_zero_purges_nothing(pool: Pool) -> None:
    await _add(pool, "old", 3, "400 days")
    assert await _refresher(pool, retention=0).purge_once() == 0
    assert len(await _ids(pool)) == 3


async def test_the_function_refuses_a_retention_under_an_hour_and_a_step_under_one(
    pool: Pool,
) -> None:
    """Whoever calls it (a writer login may): a short retention would let a late retry of a
    purged batch write it twice."""
    await _add(pool, "fresh", 3, "10 minutes")
    with pytest.raises(asyncpg.InvalidParameterValueError, match="at least 1 hour"):
        await pool.fetchval("SELECT ingest_batches_purge(interval '5 minutes', 100)")
    with pytest.raises(asyncpg.InvalidParameterValueError, match="max_rows"):
        await pool.fetchval("SELECT ingest_batches_purge(interval '1 day', 0)")
    assert len(await _ids(pool)) == 3


@pytest.fixture
def logins(migrated_database: str) -> Iterator[dict[str, str]]:
    """A refresher login and a login of no group role, on this test's database."""
    settings = _settings()
    suffix = uuid.uuid4().hex[:8]
    with psycopg.connect(migrated_database, autocommit=True) as conn:
        urls = {
            "refresher": create_login(conn, f"purge_r_{suffix}", settings.refresher_role),
            "nobody": create_login(conn, f"purge_n_{suffix}"),
        }
    yield urls
    with psycopg.connect(migrated_database, autocommit=True) as conn:
        for name in (f"purge_r_{suffix}", f"purge_n_{suffix}"):
            conn.execute(f'DROP ROLE "{name}"')


async def test_the_refresher_role_may_purge_and_a_plain_login_may_not(
    pool: Pool, logins: dict[str, str]
) -> None:
    await _add(pool, "old", 4, "2 days")
    nobody = await asyncpg.connect(logins["nobody"])
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await nobody.fetchval("SELECT ingest_batches_purge(interval '1 day', 10)")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await nobody.execute("DELETE FROM ingest_batches")
    finally:
        await nobody.close()
    refresher_pool = await create_pool(
        logins["refresher"], settings=_settings(), min_size=1, max_size=1
    )
    try:
        assert await _refresher(refresher_pool).purge_once() == 4
    finally:
        await refresher_pool.close()
    assert await _ids(pool) == set()


@pytest.mark.parametrize("raw", ["60", "3599", "-1", "inf", "nan", "a day", "1e12"])
def test_the_retention_setting_refuses_what_could_cut_a_retry_short(raw: str) -> None:
    with pytest.raises(ConfigurationError, match="ACGS_BATCH_LEDGER_RETENTION"):
        Settings.from_env({"ACGS_BATCH_LEDGER_RETENTION": raw})


@pytest.mark.parametrize(
    ("raw", "seconds"), [("0", 0.0), ("3600", MIN_BATCH_LEDGER_RETENTION), ("604800", 604800.0)]
)
def test_the_retention_setting_accepts_zero_and_an_hour_or_more(raw: str, seconds: float) -> None:
    assert Settings.from_env({"ACGS_BATCH_LEDGER_RETENTION": raw}).batch_ledger_retention == seconds


def test_the_retention_is_checked_however_settings_are_built() -> None:
    assert Settings.from_env({}).batch_ledger_retention == DAY  # the default: a day
    with pytest.raises(ConfigurationError, match="ACGS_BATCH_LEDGER_RETENTION"):
        Settings(batch_ledger_retention=10.0)
    with pytest.raises(ConfigurationError, match="ACGS_BATCH_LEDGER_RETENTION"):
        Settings.from_env({}, batch_ledger_retention=-5.0)
