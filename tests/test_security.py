"""Least-privilege roles, the NOLOGIN owner and tenant isolation that holds against the tenant
itself (migrations 0005 and 0007), with real login roles."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import asyncpg
import psycopg
import pytest
from conftest import create_login
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from acgs_db import (
    InvalidRecordError,
    MetricsRefresher,
    TenantScopeError,
    ValidationRecord,
    ValidationRepository,
    create_pool,
    tenants,
)
from acgs_db.errors import BulkInsertError
from acgs_db.pool import Pool
from acgs_db.settings import Settings
from acgs_db.tenants import TenantLoginError
from acgs_db.tooling.cli import app

SETTINGS = Settings.from_env({})
GROUPS = {
    "writer": SETTINGS.writer_role,
    "reader": SETTINGS.reader_role,
    "refresher": SETTINGS.refresher_role,
    "tenant_a": SETTINGS.tenant_role,
    "tenant_b": SETTINGS.tenant_role,
    "unbound": SETTINGS.tenant_role,
}


@dataclass(frozen=True)
class Logins:
    """Login roles of this module: one per group role, two tenant logins bound to tenants
    ``a`` and ``b``, and one tenant login bound to nothing."""

    urls: dict[str, str]
    names: dict[str, str]
    a: str
    b: str


@pytest.fixture(scope="module")
def logins(database_url: str) -> Iterator[Logins]:
    suffix = uuid.uuid4().hex[:8]
    names = {kind: f"login_{kind}_{suffix}" for kind in GROUPS}
    with psycopg.connect(database_url, autocommit=True) as conn:
        urls = {kind: create_login(conn, names[kind], GROUPS[kind]) for kind in GROUPS}
    a, b = f"sec-a-{suffix}", f"sec-b-{suffix}"
    tenants.grant(database_url, names["tenant_a"], a, SETTINGS)
    tenants.grant(database_url, names["tenant_b"], b, SETTINGS)
    yield Logins(urls, names, a, b)
    with psycopg.connect(database_url, autocommit=True) as conn:
        for kind in GROUPS:
            tenants.revoke(database_url, names[kind], SETTINGS)
            conn.execute(f'DROP ROLE "{names[kind]}"')


async def _pool(url: str) -> Pool:
    return await create_pool(url, settings=SETTINGS, min_size=1, max_size=3)


@pytest.fixture
async def as_role(logins: Logins) -> AsyncIterator[dict[str, Pool]]:
    pools = {kind: await _pool(url) for kind, url in logins.urls.items()}
    yield pools
    for p in pools.values():
        await p.close()


@pytest.fixture
def victim(conn: psycopg.Connection, logins: Logins) -> str:
    """Tenant b's rows and cached decision, written by the service: what tenant a attacks."""
    conn.execute(
        "INSERT INTO constitutional_validations (tenant_id, decision_id, compliance_score,"
        " validation_details) SELECT %s, 'shared', 0.1, '{\"secret\": true}'"
        " FROM generate_series(1, 2)",
        (logins.b,),
    )
    conn.execute(
        "INSERT INTO decision_validation_cache (tenant_id, decision_hash, validation_score)"
        " VALUES (%s, 'h', 0.1) ON CONFLICT (tenant_id, decision_hash, constitutional_hash)"
        " DO UPDATE SET validation_score = 0.1",
        (logins.b,),
    )
    return logins.b


# -- roles and ownership ---------------------------------------------------------------------


def test_group_and_owner_roles_cannot_log_in(conn: psycopg.Connection) -> None:
    roles = [
        SETTINGS.owner_role,
        SETTINGS.writer_role,
        SETTINGS.reader_role,
        SETTINGS.refresher_role,
        SETTINGS.tenant_role,
    ]
    rows = conn.execute(
        "SELECT rolname, rolcanlogin, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = ANY(%s)",
        (roles,),
    ).fetchall()
    assert len(rows) == 5
    assert all(
        login is False and sup is False and bypass is False for _, login, sup, bypass in rows
    )


def test_the_owner_role_owns_the_store(conn: psycopg.Connection) -> None:
    owners = conn.execute(
        "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class"
        " WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p', 'v', 'm')"
        " AND relname <> 'alembic_version'"
    ).fetchall()
    routines = conn.execute(
        "SELECT DISTINCT pg_get_userbyid(proowner) FROM pg_proc"
        " WHERE pronamespace = 'public'::regnamespace"
    ).fetchall()
    assert owners == [(SETTINGS.owner_role,)] and routines == [(SETTINGS.owner_role,)]


def test_every_definer_function_pins_its_search_path(conn: psycopg.Connection) -> None:
    definers = conn.execute(
        "SELECT proname, proconfig FROM pg_proc"
        " WHERE pronamespace = 'public'::regnamespace AND prosecdef"
    ).fetchall()
    assert len(definers) >= 6
    for name, config in definers:
        paths = [c for c in config or [] if c.startswith("search_path=")]
        assert paths and paths[0].endswith("pg_temp"), name


def test_no_routine_of_the_store_is_public(conn: psycopg.Connection) -> None:
    public = conn.execute(
        "SELECT p.oid::regprocedure::text FROM pg_proc p"
        " WHERE p.pronamespace = 'public'::regnamespace"
        " AND has_function_privilege('public', p.oid, 'EXECUTE')"
    ).fetchall()
    assert public == []
    created = conn.execute("SELECT has_schema_privilege('public', 'public', 'CREATE')").fetchone()
    assert created == (False,)


def test_the_view_refreshes_under_postgresql_17s_restricted_search_path(
    conn: psycopg.Connection,
) -> None:
    # PostgreSQL 17 runs REFRESH MATERIALIZED VIEW with search_path = pg_catalog, pg_temp: the
    # functions the view calls must not depend on the caller's search_path.
    with conn.transaction():
        conn.execute(f'SET LOCAL ROLE "{SETTINGS.owner_role}"')
        conn.execute("SET LOCAL search_path = pg_catalog, pg_temp")
        conn.execute("REFRESH MATERIALIZED VIEW public.tenant_constitutional_metrics_24h")
        conn.execute("SELECT count(*) FROM public.tenant_metrics_24h('x')")


# -- service roles ---------------------------------------------------------------------------


async def test_the_writer_writes_and_reads(as_role: dict[str, Pool], tenant: str) -> None:
    repo = ValidationRepository(as_role["writer"], SETTINGS)
    assert await repo.bulk_insert([ValidationRecord(tenant, "d", 0.9)] * 3, batch_id=tenant) == 3
    await repo.insert(ValidationRecord(tenant, "d", 0.8))
    assert len(await repo.history(tenant, "d")) == 4
    await repo.cache_decision(tenant, "h", 0.9)
    assert await repo.get_cached_decision(tenant, "h") is not None
    assert await repo.purge_expired_cache() >= 0
    metrics = await repo.tenant_metrics(tenant)
    assert metrics is not None and metrics.total_validations == 4


async def test_the_reader_only_reads(as_role: dict[str, Pool], pool: Pool, tenant: str) -> None:
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


async def test_the_refresher_only_refreshes(as_role: dict[str, Pool], tenant: str) -> None:
    result = await MetricsRefresher(as_role["refresher"], settings=SETTINGS).refresh_once()
    assert result.refreshed
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await ValidationRepository(as_role["refresher"], SETTINGS).history(tenant, "d")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await as_role["refresher"].fetch("SELECT * FROM validation_rollup LIMIT 1")


async def test_the_refresh_ignores_the_callers_search_path(
    as_role: dict[str, Pool], pool: Pool
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


# -- exclusivity nobody else can take --------------------------------------------------------

OLD_ADVISORY_KEYS = (
    "SELECT pg_advisory_lock(hashtextextended('acgs_db.refresh:public', 0)),"
    " pg_advisory_lock(hashtextextended('acgs_db.fold:public', 0))"
)


@pytest.mark.parametrize("kind", ["reader", "tenant_a"])
async def test_no_reader_or_tenant_can_stall_the_fold_or_make_refreshes_skip(
    as_role: dict[str, Pool], pool: Pool, kind: str
) -> None:
    async with as_role[kind].acquire() as hostile:
        await hostile.execute("BEGIN")
        await hostile.fetch(OLD_ADVISORY_KEYS)  # the keys that used to make refreshes skip
        for attempt in (
            "SELECT * FROM acgs_exclusive FOR UPDATE",
            "SELECT fold_validation_rollup()",
            "SELECT fold_rollup_backlog(1)",
            "SELECT rollup_fold_range('-infinity', 'infinity')",
            "SELECT rollup_drop_retired()",
            "SELECT refresh_tenant_metrics_24h()",
            "LOCK TABLE acgs_exclusive",
        ):
            await hostile.execute("SAVEPOINT s")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await hostile.execute(attempt)
            await hostile.execute("ROLLBACK TO SAVEPOINT s")
        async with pool.acquire() as service:
            await service.execute("SET statement_timeout = '5s'")
            try:
                assert await service.fetchval("SELECT fold_validation_rollup()") >= 0
                assert await service.fetchval("SELECT refresh_tenant_metrics_24h()") is True
            finally:
                await service.execute("RESET statement_timeout")
        await hostile.execute("ROLLBACK")
        await hostile.execute("SELECT pg_advisory_unlock_all()")


async def test_one_refresh_at_a_time_the_second_skips(as_role: dict[str, Pool]) -> None:
    async with as_role["writer"].acquire() as first, as_role["refresher"].acquire() as second:
        async with first.transaction():
            assert await first.fetchval("SELECT refresh_tenant_metrics_24h()") is True
            assert await second.fetchval("SELECT refresh_tenant_metrics_24h()") is False
        assert await second.fetchval("SELECT refresh_tenant_metrics_24h()") is True


# -- tenant logins ---------------------------------------------------------------------------


async def test_a_tenant_login_sees_and_writes_its_tenant_only(
    as_role: dict[str, Pool], logins: Logins, victim: str
) -> None:
    scoped = ValidationRepository(as_role["tenant_a"], SETTINGS, tenant_scoped=True)
    assert await scoped.bound_tenant() == logins.a
    assert await scoped.bulk_insert([ValidationRecord(logins.a, "shared", 0.9)] * 2) == 2
    await scoped.insert(ValidationRecord(logins.a, "shared", 0.95))
    mine = await scoped.history(logins.a, "shared")
    assert len(mine) == 3 and {e.tenant_id for e in mine} == {logins.a}
    assert {s.compliance_score for s in await scoped.decision_scores("shared")} == {
        e.compliance_score for e in mine
    }
    await scoped.cache_decision(logins.a, "h", 0.7)
    assert await scoped.get_cached_decision(logins.a, "h") is not None
    metrics = await scoped.tenant_metrics(logins.a)
    assert metrics is not None and metrics.total_validations == 3


async def test_a_tenant_scoped_repository_refuses_calls_naming_another_tenant(
    as_role: dict[str, Pool], logins: Logins, victim: str
) -> None:
    scoped = ValidationRepository(as_role["tenant_a"], SETTINGS, tenant_scoped=True)
    calls = [
        scoped.history(victim, "shared"),
        scoped.get_cached_decision(victim, "h"),
        scoped.cache_decision(victim, "h", 1.0, {"forged": True}),
        scoped.insert(ValidationRecord(victim, "shared", 1.0)),
        scoped.tenant_metrics(victim),
    ]
    for call in calls:
        with pytest.raises(TenantScopeError, match=logins.a):
            await call
    with pytest.raises(TenantScopeError, match="service login"):
        await scoped.bulk_insert([ValidationRecord(logins.a, "d", 0.9)], batch_id="b")
    with pytest.raises(InvalidRecordError, match="bound to tenant") as caught:
        await scoped.bulk_insert(
            [ValidationRecord(logins.a, "d", 0.9), ValidationRecord(victim, "d", 0.9)]
        )
    assert caught.value.index == 1
    assert await scoped.history(logins.a, "d") == []


async def test_a_login_bound_to_nothing_sees_nothing(as_role: dict[str, Pool], victim: str) -> None:
    with pytest.raises(TenantScopeError, match="bound to no tenant"):
        await ValidationRepository(as_role["unbound"], SETTINGS, tenant_scoped=True).history(
            victim, "shared"
        )
    async with as_role["unbound"].acquire() as conn:
        await conn.execute("SELECT set_config('acgs.tenant_id', $1, false)", victim)
        assert await conn.fetchval("SELECT count(*) FROM constitutional_validations") == 0
        assert await conn.fetchval("SELECT count(*) FROM decision_validation_cache") == 0
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
            await conn.execute(
                "INSERT INTO constitutional_validations (tenant_id, decision_id,"
                " compliance_score) VALUES ($1, 'd', 0.5)",
                victim,
            )
        await conn.execute("RESET acgs.tenant_id")


async def test_settings_and_role_changes_do_not_move_a_tenant_login(
    as_role: dict[str, Pool], logins: Logins, victim: str
) -> None:
    async with as_role["tenant_a"].acquire() as conn:
        for move in (
            "SELECT set_config('acgs.tenant_id', $1, false)",
            "SELECT set_config('acgs.tenant_id', $1, true)",
        ):
            await conn.execute(move, victim)
            for query in (
                "SELECT DISTINCT tenant_id FROM constitutional_validations",
                "SELECT DISTINCT tenant_id FROM decision_validation_cache",
            ):
                assert victim not in {r[0] for r in await conn.fetch(query)}
        await conn.execute(f'SET ROLE "{SETTINGS.tenant_role}"')
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM constitutional_validations WHERE tenant_id = $1", victim
            )
            == 0
        )
        await conn.execute("RESET ROLE")
        for role in (SETTINGS.writer_role, SETTINGS.owner_role, logins.names["tenant_b"]):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(f'SET ROLE "{role}"')
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(f'SET SESSION AUTHORIZATION "{logins.names["tenant_b"]}"')
        # A forged "compliant" cache hit for the victim is refused.
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
            await conn.execute(
                "INSERT INTO decision_validation_cache (tenant_id, decision_hash,"
                " validation_score) VALUES ($1, 'h', 1.0)"
                " ON CONFLICT (tenant_id, decision_hash, constitutional_hash)"
                " DO UPDATE SET validation_score = 1.0",
                victim,
            )
        await conn.execute("RESET acgs.tenant_id")


async def test_tenant_metrics_show_the_bound_tenant_only(
    as_role: dict[str, Pool], pool: Pool, logins: Logins, victim: str
) -> None:
    await ValidationRepository(pool, SETTINGS).insert(ValidationRecord(logins.a, "d", 0.2))
    await pool.execute("SELECT refresh_tenant_metrics_24h()")
    async with as_role["tenant_a"].acquire() as conn:
        await conn.execute("SELECT set_config('acgs.tenant_id', $1, false)", victim)
        view = await conn.fetch("SELECT tenant_id FROM tenant_metrics_24h_current")
        realtime = await conn.fetch("SELECT tenant_id FROM current_tenant_metrics_24h()")
        assert [r[0] for r in view] == [logins.a]
        assert [r[0] for r in realtime] == [logins.a]
        for forbidden in (
            "SELECT count(*) FROM constitutional_validations_default",
            "SELECT count(*) FROM validation_rollup",
            "SELECT count(*) FROM validation_rollup_delta",
            "SELECT count(*) FROM tenant_constitutional_metrics_24h",
            "SELECT count(*) FROM tenant_logins",
            "SELECT count(*) FROM ingest_batches",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.fetchval(forbidden)
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetchval("SELECT count(*) FROM tenant_metrics_24h($1)", victim)
        await conn.execute("RESET acgs.tenant_id")


async def test_row_level_security_is_forced_on_both_tables(pool: Pool) -> None:
    rows = await pool.fetch(
        "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class WHERE relname IN"
        " ('constitutional_validations', 'decision_validation_cache') ORDER BY 1"
    )
    assert [tuple(r) for r in rows] == [
        ("constitutional_validations", True, True),
        ("decision_validation_cache", True, True),
    ]


# -- hostile SQL from a tenant login (property) ----------------------------------------------

# Every SQL statement a tenant login might try, each with the other tenant's id as $1 (%(other)s).
ATTEMPTS = [
    "SELECT set_config('acgs.tenant_id', %(other)s, false)",
    "SELECT set_config('acgs.tenant_id', %(other)s, true)",
    "SET acgs.tenant_id = 'x'",
    "RESET acgs.tenant_id",
    "RESET ALL",
    f'SET ROLE "{SETTINGS.tenant_role}"',
    f'SET ROLE "{SETTINGS.writer_role}"',
    f'SET ROLE "{SETTINGS.owner_role}"',
    "RESET ROLE",
    "SET row_security = off",
    "SELECT tenant_id FROM constitutional_validations",
    "SELECT tenant_id FROM constitutional_validations WHERE tenant_id = %(other)s",
    "SELECT tenant_id FROM decision_validation_cache",
    "SELECT tenant_id FROM decision_validation_cache WHERE tenant_id = %(other)s",
    "SELECT tenant_id FROM tenant_metrics_24h_current",
    "SELECT tenant_id FROM current_tenant_metrics_24h()",
    "SELECT tenant_id FROM tenant_metrics_24h(%(other)s)",
    "SELECT tenant_id FROM tenant_constitutional_metrics_24h",
    "SELECT tenant_id FROM constitutional_validations_default",
    "SELECT tenant_id FROM validation_rollup",
    "SELECT acgs_session_tenant() AS tenant_id",
    "UPDATE constitutional_validations SET compliance_score = 1 WHERE tenant_id = %(other)s",
    "DELETE FROM constitutional_validations WHERE tenant_id = %(other)s",
    "UPDATE decision_validation_cache SET validation_score = 1 WHERE tenant_id = %(other)s",
    "DELETE FROM decision_validation_cache WHERE tenant_id = %(other)s",
    "INSERT INTO constitutional_validations (tenant_id, decision_id, compliance_score)"
    " VALUES (%(other)s, 'forged', 1)",
    "INSERT INTO decision_validation_cache (tenant_id, decision_hash, validation_score)"
    " VALUES (%(other)s, 'h', 1) ON CONFLICT (tenant_id, decision_hash, constitutional_hash)"
    " DO UPDATE SET validation_score = 1",
    "SELECT fold_validation_rollup()",
    "SELECT fold_rollup_backlog(1000)",
    "SELECT rollup_fold_range('-infinity', 'infinity')",
    "SELECT refresh_tenant_metrics_24h()",
    "CREATE TEMPORARY TABLE IF NOT EXISTS constitutional_validations"
    " (tenant_id varchar, decision_id varchar)",
    "CREATE FUNCTION pg_temp.acgs_session_tenant() RETURNS varchar LANGUAGE sql"
    " AS $$ SELECT %(other)s::varchar $$",
    "SET search_path = pg_temp, public",
    "RESET search_path",
]
VICTIM_STATE = (
    "SELECT count(*), sum(compliance_score), (SELECT count(*) FROM decision_validation_cache"
    " WHERE tenant_id = %(other)s AND validation_score = 0.1)"
    " FROM constitutional_validations WHERE tenant_id = %(other)s"
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(attempts=st.lists(st.sampled_from(ATTEMPTS), min_size=1, max_size=12))
def test_no_sequence_of_tenant_sql_reaches_another_tenant(
    attempts: list[str], logins: Logins, conn: psycopg.Connection, victim: str
) -> None:
    before = conn.execute(VICTIM_STATE, {"other": victim}).fetchone()
    with psycopg.connect(logins.urls["tenant_a"], autocommit=True) as hostile:
        for attempt in attempts:
            try:
                cursor = hostile.execute(attempt, {"other": victim})
            except psycopg.Error:
                continue
            if cursor.description and cursor.description[0].name == "tenant_id":
                seen = {row[0] for row in cursor.fetchall()}
                assert seen <= {logins.a}, attempt
    assert conn.execute(VICTIM_STATE, {"other": victim}).fetchone() == before


# -- binding logins: acgs-db tenant-login ----------------------------------------------------


def test_binding_refuses_logins_that_would_see_every_tenant(
    conn: psycopg.Connection, database_url: str, logins: Logins
) -> None:
    name = f"login_wide_{uuid.uuid4().hex[:8]}"
    create_login(conn, name, SETTINGS.reader_role)
    try:
        with pytest.raises(TenantLoginError, match=SETTINGS.reader_role):
            tenants.grant(database_url, name, "t", SETTINGS)
        with pytest.raises(TenantLoginError, match="superuser"):
            tenants.grant(database_url, "postgres", "t", SETTINGS)
        with pytest.raises(TenantLoginError, match="does not exist"):
            tenants.grant(database_url, name + "_absent", "t", SETTINGS)
        with pytest.raises(TenantLoginError, match=f"bound to tenant '{logins.a}'"):
            tenants.grant(database_url, logins.names["tenant_a"], logins.b, SETTINGS)
        assert tenants.grant(database_url, logins.names["tenant_a"], logins.a, SETTINGS) is False
    finally:
        conn.execute(f'DROP ROLE "{name}"')


def test_the_tenant_login_commands(
    conn: psycopg.Connection, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACGS_DATABASE_URL", database_url)
    name = f"login_cli_{uuid.uuid4().hex[:8]}"
    url = create_login(conn, name)
    runner = CliRunner()
    try:
        granted = runner.invoke(app, ["tenant-login", "grant", name, "cli-tenant"])
        assert granted.exit_code == 0, granted.output
        assert f"bound: login {name} to tenant cli-tenant" in granted.output
        listed = runner.invoke(app, ["tenant-login", "list"])
        assert f"{name}\tcli-tenant\t" in listed.output
        with psycopg.connect(url) as login:
            assert login.execute("SELECT acgs_session_tenant()").fetchone() == ("cli-tenant",)
        revoked = runner.invoke(app, ["tenant-login", "revoke", name])
        assert revoked.exit_code == 0 and "unbound" in revoked.output
        with psycopg.connect(url) as login, pytest.raises(psycopg.errors.InsufficientPrivilege):
            login.execute("SELECT count(*) FROM constitutional_validations")
        refused = runner.invoke(app, ["tenant-login", "grant", "postgres", "cli-tenant"])
        assert refused.exit_code == 1 and "superuser" in refused.output
    finally:
        conn.execute(f'DROP ROLE "{name}"')


def test_partitions_maintenance_makes_go_to_the_owner(migrated_database: str) -> None:
    # pg_partman makes partitions as whoever runs the maintenance (a superuser here): the
    # maintenance then hands them, and their statistics, to the owner role.
    with psycopg.connect(migrated_database, autocommit=True) as conn:
        conn.execute(
            "SELECT partman.create_partition_time('public.constitutional_validations',"
            " ARRAY[date_trunc('month', now()) - interval '6 months'])"
        )
        conn.execute("CALL acgs_partition_maintenance()")
        owners = conn.execute(
            "SELECT DISTINCT pg_get_userbyid(c.relowner) FROM pg_inherits i"
            " JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'constitutional_validations'::regclass"
            " UNION SELECT DISTINCT pg_get_userbyid(s.stxowner) FROM pg_statistic_ext s"
            " JOIN pg_inherits i ON i.inhrelid = s.stxrelid"
            " WHERE i.inhparent = 'constitutional_validations'::regclass"
        ).fetchall()
    assert owners == [(SETTINGS.owner_role,)]
