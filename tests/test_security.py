"""Least-privilege roles and tenant isolation (migration 0005), with real login roles."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import psycopg
import pytest
from conftest import create_login

from acgs_db import (
    InvalidRecordError,
    MetricsRefresher,
    ValidationRecord,
    ValidationRepository,
    create_pool,
)
from acgs_db.errors import BulkInsertError
from acgs_db.settings import Settings

SETTINGS = Settings.from_env({})


@pytest.fixture(scope="module")
def logins(database_url: str) -> Iterator[dict[str, str]]:
    """A login role in each group role, with its URL to the session database."""
    suffix = uuid.uuid4().hex[:8]
    groups = {
        "writer": SETTINGS.writer_role,
        "reader": SETTINGS.reader_role,
        "refresher": SETTINGS.refresher_role,
        "tenant": SETTINGS.tenant_role,
    }
    with psycopg.connect(database_url, autocommit=True) as conn:
        urls = {
            kind: create_login(conn, f"login_{kind}_{suffix}", group)
            for kind, group in groups.items()
        }
    yield urls
    with psycopg.connect(database_url, autocommit=True) as conn:
        for kind in groups:
            conn.execute(f'DROP ROLE "login_{kind}_{suffix}"')


async def _pool(url: str) -> asyncpg.Pool:
    return await create_pool(url, settings=SETTINGS, min_size=1, max_size=3)


@pytest.fixture
async def as_role(logins: dict[str, str]) -> AsyncIterator[dict[str, asyncpg.Pool]]:
    pools = {kind: await _pool(url) for kind, url in logins.items()}
    yield pools
    for p in pools.values():
        await p.close()


def test_group_roles_cannot_log_in(conn: psycopg.Connection) -> None:
    rows = conn.execute(
        "SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname = ANY(%s) ORDER BY 1",
        (
            [
                SETTINGS.writer_role,
                SETTINGS.reader_role,
                SETTINGS.refresher_role,
                SETTINGS.tenant_role,
            ],
        ),
    ).fetchall()
    assert len(rows) == 4
    assert all(can_login is False for _, can_login in rows)


async def test_the_writer_writes_and_reads(as_role: dict[str, asyncpg.Pool], tenant: str) -> None:
    repo = ValidationRepository(as_role["writer"], SETTINGS)
    assert await repo.bulk_insert([ValidationRecord(tenant, "d", 0.9)] * 3, batch_id=tenant) == 3
    await repo.insert(ValidationRecord(tenant, "d", 0.8))
    assert len(await repo.history(tenant, "d")) == 4
    await repo.cache_decision(tenant, "h", 0.9)
    assert await repo.get_cached_decision(tenant, "h") is not None
    assert await repo.purge_expired_cache() >= 0
    metrics = await repo.tenant_metrics(tenant)
    assert metrics is not None and metrics.total_validations == 4


async def test_the_reader_only_reads(
    as_role: dict[str, asyncpg.Pool], pool: asyncpg.Pool, tenant: str
) -> None:
    await ValidationRepository(pool, SETTINGS).insert(ValidationRecord(tenant, "d", 0.5))
    repo = ValidationRepository(as_role["reader"], SETTINGS)
    assert len(await repo.history(tenant, "d")) == 1
    assert (await repo.tenant_metrics(tenant)) is not None
    with pytest.raises(BulkInsertError, match="permission denied"):
        await repo.bulk_insert([ValidationRecord(tenant, "d", 0.5)])
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await repo.cache_decision(tenant, "h", 0.5)
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await as_role["reader"].execute("SELECT refresh_tenant_metrics_24h()")


async def test_the_refresher_only_refreshes(as_role: dict[str, asyncpg.Pool], tenant: str) -> None:
    result = await MetricsRefresher(as_role["refresher"], settings=SETTINGS).refresh_once()
    assert result.refreshed
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await ValidationRepository(as_role["refresher"], SETTINGS).history(tenant, "d")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await as_role["refresher"].fetch("SELECT * FROM validation_rollup LIMIT 1")


async def test_the_refresh_ignores_the_callers_search_path(
    as_role: dict[str, asyncpg.Pool], pool: asyncpg.Pool
) -> None:
    # A schema that shadows the view's name comes first in the caller's search_path; the
    # SECURITY DEFINER function's pinned search_path still refreshes the real view.
    await pool.execute("CREATE SCHEMA IF NOT EXISTS shadow")
    await pool.execute(
        "CREATE TABLE IF NOT EXISTS shadow.tenant_constitutional_metrics_24h (x int)"
    )
    await pool.execute(f'GRANT USAGE ON SCHEMA shadow TO "{SETTINGS.refresher_role}"')
    async with as_role["refresher"].acquire() as conn:
        await conn.execute("SET search_path = shadow, public")
        assert await conn.fetchval("SELECT public.refresh_tenant_metrics_24h()") is True
        await conn.execute("RESET search_path")


# -- tenant isolation ----------------------------------------------------------------------


async def test_a_tenant_scoped_repository_sees_and_writes_its_tenant_only(
    as_role: dict[str, asyncpg.Pool], pool: asyncpg.Pool, tenant: str
) -> None:
    other = tenant + "-other"
    await ValidationRepository(pool, SETTINGS).bulk_insert(
        [ValidationRecord(other, "shared", 0.1, {"secret": True})]
    )
    scoped = ValidationRepository(as_role["tenant"], SETTINGS, tenant_scoped=True)
    assert await scoped.bulk_insert([ValidationRecord(tenant, "shared", 0.9)] * 2) == 2
    await scoped.insert(ValidationRecord(tenant, "shared", 0.95))
    mine = await scoped.history(tenant, "shared")
    assert len(mine) == 3 and {e.tenant_id for e in mine} == {tenant}
    # The transaction is scoped to the tenant the call names: never a mix of tenants.
    assert [e.tenant_id for e in await scoped.history(other, "shared")] == [other]
    await scoped.cache_decision(tenant, "h", 0.7)
    assert await scoped.get_cached_decision(tenant, "h") is not None
    metrics = await scoped.tenant_metrics(tenant)
    assert metrics is not None and metrics.total_validations == 3


async def test_a_tenant_scoped_bulk_insert_refuses_other_tenants(
    as_role: dict[str, asyncpg.Pool], tenant: str
) -> None:
    scoped = ValidationRepository(as_role["tenant"], SETTINGS, tenant_scoped=True)
    with pytest.raises(InvalidRecordError, match="tenant-scoped") as caught:
        await scoped.bulk_insert(
            [ValidationRecord(tenant, "d", 0.9), ValidationRecord(tenant + "x", "d", 0.9)]
        )
    assert caught.value.index == 1
    assert await scoped.history(tenant, "d") == []


async def test_hand_written_sql_cannot_cross_tenants(
    as_role: dict[str, asyncpg.Pool], pool: asyncpg.Pool, tenant: str
) -> None:
    other = tenant + "-other"
    await ValidationRepository(pool, SETTINGS).bulk_insert(
        [ValidationRecord(other, "d", 0.1), ValidationRecord(tenant, "d", 0.2)]
    )
    async with as_role["tenant"].acquire() as conn:
        # no tenant set: nothing at all
        assert await conn.fetchval("SELECT count(*) FROM constitutional_validations") == 0
        async with conn.transaction():
            await conn.execute("SELECT set_config('acgs.tenant_id', $1, true)", tenant)
            tenants = await conn.fetch("SELECT DISTINCT tenant_id FROM constitutional_validations")
            assert [r[0] for r in tenants] == [tenant]
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
                await conn.execute(
                    "INSERT INTO constitutional_validations (tenant_id, decision_id,"
                    " compliance_score) VALUES ($1, 'd', 0.5)",
                    other,
                )
        for forbidden in (
            "SELECT count(*) FROM constitutional_validations_default",
            "SELECT count(*) FROM validation_rollup",
            "SELECT count(*) FROM validation_rollup_delta",
            "SELECT count(*) FROM tenant_constitutional_metrics_24h",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.fetchval(forbidden)
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetchval("SELECT count(*) FROM tenant_metrics_24h($1)", other)


async def test_tenant_metrics_views_filter_by_the_setting(
    as_role: dict[str, asyncpg.Pool], pool: asyncpg.Pool, tenant: str
) -> None:
    other = tenant + "-other"
    await ValidationRepository(pool, SETTINGS).bulk_insert(
        [ValidationRecord(other, "d", 0.1), ValidationRecord(tenant, "d", 0.2)]
    )
    await pool.execute("SELECT refresh_tenant_metrics_24h()")
    async with as_role["tenant"].acquire() as conn, conn.transaction():
        await conn.execute("SELECT set_config('acgs.tenant_id', $1, true)", tenant)
        view = await conn.fetch("SELECT tenant_id FROM tenant_metrics_24h_current")
        realtime = await conn.fetch("SELECT tenant_id FROM current_tenant_metrics_24h()")
        assert [r[0] for r in view] == [tenant]
        assert [r[0] for r in realtime] == [tenant]


async def test_row_level_security_is_on_for_both_tables(pool: asyncpg.Pool) -> None:
    rows = await pool.fetch(
        "SELECT relname, relrowsecurity FROM pg_class WHERE relname IN"
        " ('constitutional_validations', 'decision_validation_cache') ORDER BY 1"
    )
    assert [tuple(r) for r in rows] == [
        ("constitutional_validations", True),
        ("decision_validation_cache", True),
    ]
