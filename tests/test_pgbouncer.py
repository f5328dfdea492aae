"""The repository through a real PgBouncer in transaction pooling mode (``ACGS_POOLER``).

The module starts its own PgBouncer (Debian's 1.18: no protocol-level prepared statements) on
a free loopback port in front of the test server, with fewer server connections than the
clients' pools hold, so that the statements of different clients interleave on the same server
connections as they would with hundreds of service replicas.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

import asyncpg
import psycopg
import pytest
from conftest import create_login

from acgs_db import ValidationRecord, ValidationRepository, tenants
from acgs_db.errors import BulkInsertError, ConfigurationError, InvalidRecordError
from acgs_db.pool import Pool, create_pool, init_connection, pool_options
from acgs_db.refresher import MetricsRefresher
from acgs_db.settings import Settings
from acgs_db.tooling.pgbouncer import PgBouncer, auth_config
from acgs_db.urls import password_of

if TYPE_CHECKING:
    from conftest import Server

# An application name of its own: the fan-in check counts the server connections that carry it.
POOLED = Settings.from_env(
    {"ACGS_POOLER": "transaction", "ACGS_APPLICATION_NAME": "acgs_pgbouncer_test"}
)
SERVER_CONNECTIONS = 3  # PgBouncer's pool per database and login
CLIENT_CONNECTIONS = 8  # each client pool's size: more than the server connections


def pgbouncer_logins(*urls: str) -> dict[str, str | None]:
    """The logins PgBouncer lets in (name -> password, from each URL or its passfile): the
    test server asks for SCRAM passwords, and so does PgBouncer then (auth_config)."""
    return {unquote(urlsplit(url).username or ""): password_of(url) for url in urls}


@pytest.fixture(scope="module")
def tenant_login(database_url: str) -> Iterator[tuple[str, str, str]]:
    """A tenant login bound to a tenant of its own: (login, tenant, its URL)."""
    suffix = uuid.uuid4().hex[:8]
    login, tenant = f"login_pgb_{suffix}", f"pgb-{suffix}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        url = create_login(conn, login)
    tenants.grant(database_url, login, tenant, POOLED)
    yield login, tenant, url
    tenants.revoke(database_url, login, POOLED)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'DROP ROLE "{login}"')


@pytest.fixture(scope="module")
def bouncer(pg_server: Server, tenant_login: tuple[str, str, str]) -> Iterator[PgBouncer]:
    """PgBouncer in transaction pooling mode in front of the test server."""
    logins = pgbouncer_logins(pg_server.admin_url, tenant_login[2])
    with PgBouncer(pg_server.admin_url, logins=logins, pool_size=SERVER_CONNECTIONS) as running:
        yield running


@pytest.fixture
async def pooled(bouncer: PgBouncer, database_url: str) -> AsyncIterator[Pool]:
    """The repository's pool through PgBouncer, with ACGS_POOLER=transaction."""
    pool = await create_pool(
        bouncer.url_for(database_url),
        settings=POOLED,
        min_size=CLIENT_CONNECTIONS,
        max_size=CLIENT_CONNECTIONS,
    )
    yield pool
    await pool.close()


def _records(tenant: str, n: int, decision: str = "d") -> list[ValidationRecord]:
    return [ValidationRecord(tenant, f"{decision}{i % 7}", 0.9, {"i": i}, i % 50) for i in range(n)]


def _count(conn: psycopg.Connection, tenant: str) -> int:
    row = conn.execute(
        "SELECT count(*) FROM constitutional_validations WHERE tenant_id = %s", (tenant,)
    ).fetchone()
    assert row is not None
    return int(row[0])


# -- settings -------------------------------------------------------------------------------


def test_the_pooler_setting_shapes_the_pool() -> None:
    direct = pool_options(Settings.from_env({}))
    assert direct["statement_cache_size"] == 100
    assert set(direct["server_settings"]) > {"application_name", "search_path"}
    assert direct["init"] is init_connection

    transaction = pool_options(Settings.from_env({"ACGS_POOLER": "transaction"}))
    assert transaction["statement_cache_size"] == 0
    assert set(transaction["server_settings"]) == {"application_name"}
    assert transaction["init"] is not init_connection

    session = pool_options(Settings.from_env({"ACGS_POOLER": "Session"}))
    assert session["statement_cache_size"] == 100
    assert set(session["server_settings"]) == {"application_name"}

    with pytest.raises(ConfigurationError, match="ACGS_POOLER='statement'"):
        Settings.from_env({"ACGS_POOLER": "statement"})


def test_auth_is_trust_without_passwords_and_scram_with_them() -> None:
    assert auth_config({"a": None}) == ({"auth_type": "trust"}, '"a" ""\n')
    settings, userlist = auth_config({"a": 'p"w', "b": "x"})
    assert settings == {"auth_type": "scram-sha-256"}
    assert userlist == '"a" "p""w"\n"b" "x"\n'
    with pytest.raises(ValueError, match="without a password"):
        auth_config({"a": "pw", "b": None})


# -- connecting -----------------------------------------------------------------------------


async def test_without_the_setting_pgbouncer_refuses_the_pool(
    bouncer: PgBouncer, database_url: str
) -> None:
    # The direct pool's startup parameters (search_path, keepalives) are refused at once: a
    # missing ACGS_POOLER is a clear error, not prepared statements failing later.
    with pytest.raises(asyncpg.PostgresError, match="unsupported startup parameter"):
        await create_pool(
            bouncer.url_for(database_url), settings=Settings.from_env({}), min_size=1, max_size=1
        )


async def test_a_schema_the_login_does_not_default_to_is_refused(
    bouncer: PgBouncer, database_url: str
) -> None:
    other = Settings.from_env({"ACGS_POOLER": "transaction", "ACGS_SCHEMA": "elsewhere"})
    with pytest.raises(ConfigurationError, match="not 'elsewhere'"):
        await create_pool(bouncer.url_for(database_url), settings=other, min_size=1, max_size=1)


async def test_a_statement_cache_fails_through_transaction_pooling(
    bouncer: PgBouncer, database_url: str, tenant: str
) -> None:
    # Why the cache must be off: named statements prepared on one server connection are
    # looked for on another.
    pool = await asyncpg.create_pool(
        bouncer.url_for(database_url),
        min_size=CLIENT_CONNECTIONS,
        max_size=CLIENT_CONNECTIONS,
        statement_cache_size=100,
        server_settings={"application_name": "acgs_pgb_cache_on"},
    )
    assert pool is not None
    try:
        results = await asyncio.gather(
            *(
                pool.fetchval("SELECT count(*) FROM ingest_batches WHERE rows > $1", i)
                for i in range(300)
            ),
            return_exceptions=True,
        )
    finally:
        await pool.close()
    errors = [r for r in results if isinstance(r, Exception)]
    assert errors, "named prepared statements should break under transaction pooling"
    assert all("prepared statement" in str(e) for e in errors), errors[:3]


# -- the repository -------------------------------------------------------------------------


async def test_writes_and_reads_interleave_on_few_server_connections(
    pooled: Pool, conn: psycopg.Connection, tenant: str
) -> None:
    repo = ValidationRepository(pooled, POOLED)

    async def request(i: int) -> int:
        # decision_scores() reads a decision across tenants: ids of this test's own, so that
        # it reads this test's rows and not what the suite wrote before (52 s instead of 1).
        decision = f"{tenant}-d{i % 10}"
        await repo.insert(ValidationRecord(tenant, decision, 0.5 + (i % 5) / 10, {"i": i}, i))
        history = await repo.history(tenant, decision, limit=1000)
        scores = await repo.decision_scores(decision)
        await repo.cache_decision(tenant, f"h{i % 4}", 0.9, {"i": i}, ["r1"])
        cached = await repo.get_cached_decision(tenant, f"h{i % 4}")
        assert cached is not None and cached.tenant_id == tenant
        assert any(h.validation_details == {"i": i} for h in history)
        assert len(scores) >= 1
        return len(history)

    seen = await asyncio.gather(*(request(i) for i in range(200)))
    assert len(seen) == 200
    assert _count(conn, tenant) == 200
    # Fan-in: the clients' 8 connections were served by at most 3 server connections.
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND backend_type = 'client backend' AND client_port IS NOT NULL"
        " AND application_name = %s",
        (POOLED.application_name,),
    ).fetchone()
    assert row is not None and 1 <= row[0] <= SERVER_CONNECTIONS


async def test_bulk_insert_plain_batch_and_commit_every(
    pooled: Pool, conn: psycopg.Connection, tenant: str
) -> None:
    repo = ValidationRepository(pooled, POOLED)
    assert await repo.bulk_insert(_records(tenant, 1000)) == 1000
    batch = f"batch-{uuid.uuid4()}"
    assert await repo.bulk_insert(_records(tenant, 700), batch_id=batch) == 700
    assert await repo.bulk_insert(_records(tenant, 700), batch_id=batch) == 0  # a retry
    assert await repo.bulk_insert(_records(tenant, 1050), commit_every=200) == 1050
    assert _count(conn, tenant) == 2750

    # Concurrent bulk inserts share the server connections and stay whole.
    others = [f"{tenant}-{k}" for k in range(4)]
    done = await asyncio.gather(*(repo.bulk_insert(_records(t, 400)) for t in others))
    assert done == [400] * 4
    assert [_count(conn, t) for t in others] == [400] * 4

    # A bad record in the middle: nothing of the call is written.
    bad = _records(tenant, 100)
    bad[60] = ValidationRecord(tenant, "d", 1.5)
    with pytest.raises(InvalidRecordError, match="compliance_score"):
        await repo.bulk_insert(bad)
    assert _count(conn, tenant) == 2750


async def test_multi_connection_copy_is_refused_and_consumes_nothing(
    pooled: Pool, conn: psycopg.Connection, tenant: str
) -> None:
    repo = ValidationRepository(pooled, POOLED)
    consumed: list[int] = []

    def records() -> Iterator[ValidationRecord]:
        for i in range(100):
            consumed.append(i)
            yield ValidationRecord(tenant, "d", 0.9)

    with pytest.raises(ConfigurationError, match="transaction pooler"):
        await repo.bulk_insert(records(), connections=2)
    assert consumed == []
    assert _count(conn, tenant) == 0


async def test_prepared_transactions_are_not_session_bound(
    bouncer: PgBouncer, database_url: str, conn: psycopg.Connection, tenant: str
) -> None:
    # What two-phase COPY needs from the server works through PgBouncer: a part prepared on
    # one connection is committed from another (PREPARE TRANSACTION detaches it from its
    # session). It is refused for the reason the next test shows, not for this one.
    url = bouncer.url_for(database_url)
    first = await asyncpg.connect(url, statement_cache_size=0)
    second = await asyncpg.connect(url, statement_cache_size=0)
    gid = f"acgs_pgb_test:{uuid.uuid4()}"
    try:
        await first.execute("BEGIN")
        await first.execute(
            "INSERT INTO constitutional_validations (tenant_id, decision_id, compliance_score)"
            " VALUES ($1, 'd', 0.5)",
            tenant,
        )
        await first.execute(f"PREPARE TRANSACTION '{gid}'")
        assert _count(conn, tenant) == 0
        await second.execute(f"COMMIT PREPARED '{gid}'")
    finally:
        await first.close()
        await second.close()
    assert _count(conn, tenant) == 1


async def test_multi_connection_copy_waits_for_server_connections_others_hold(
    pg_server: Server, database_url: str, conn: psycopg.Connection, tenant: str
) -> None:
    # Why it is refused: each part holds a server connection from BEGIN to PREPARE. With one
    # of two server connections held by another client, the second part waits until
    # PgBouncer's query_wait_timeout fails it; the batch then writes nothing.
    with PgBouncer(
        pg_server.admin_url,
        logins=pgbouncer_logins(pg_server.admin_url),
        pool_size=2,
        query_wait_timeout=2,
    ) as small:
        url = small.url_for(database_url)
        holder = await asyncpg.connect(url, statement_cache_size=0)
        pool = await create_pool(url, settings=POOLED, min_size=1, max_size=3)
        try:
            await holder.execute("BEGIN")
            await holder.execute("SELECT 1")  # holds one server connection
            unguarded = ValidationRepository(pool, Settings.from_env({}))  # refusal off
            with pytest.raises(BulkInsertError, match="query_wait_timeout"):
                await unguarded.bulk_insert(_records(tenant, 20_000), connections=2)
        finally:
            await holder.close()
            await pool.close()
    assert _count(conn, tenant) == 0


async def test_tenant_logins_staged_copy_works_through_transaction_pooling(
    bouncer: PgBouncer, conn: psycopg.Connection, tenant_login: tuple[str, str, str]
) -> None:
    # Row-level security refuses COPY FROM to tenant logins; their rows are staged in a
    # session temporary table (ON COMMIT DELETE ROWS) inside the bulk insert's transaction,
    # so the whole path runs on one server connection and leaves no rows behind.
    _, bound, login_url = tenant_login
    url = bouncer.url_for(login_url)
    pool = await create_pool(url, settings=POOLED, min_size=4, max_size=4)
    try:
        repo = ValidationRepository(pool, POOLED, tenant_scoped=True)
        before = _count(conn, bound)
        done = await asyncio.gather(*(repo.bulk_insert(_records(bound, 300)) for _ in range(6)))
        assert done == [300] * 6
        assert _count(conn, bound) == before + 1800

        bad = _records(bound, 50)
        bad[30] = ValidationRecord("another-tenant", "d", 0.5)
        with pytest.raises(InvalidRecordError, match="bound to tenant"):
            await repo.bulk_insert(bad)
        assert _count(conn, bound) == before + 1800
        assert len(await repo.history(bound, "d0", limit=1000)) >= 6
        metrics = await repo.tenant_metrics(bound)
        assert metrics is not None and metrics.total_validations >= 1800
    finally:
        await pool.close()


async def test_metrics_and_the_refresher_through_transaction_pooling(
    pooled: Pool, tenant: str
) -> None:
    repo = ValidationRepository(pooled, POOLED)
    now = datetime.now(UTC)
    records = [
        ValidationRecord(tenant, "d", 0.8, None, 10, now - timedelta(minutes=i)) for i in range(60)
    ]
    assert await repo.bulk_insert(records) == 60
    refresher = MetricsRefresher(pooled, 60.0, settings=POOLED)
    result = await refresher.refresh_once()
    assert result.refreshed
    metrics = await repo.tenant_metrics(tenant)
    assert metrics is not None
    assert metrics.source == "view" and metrics.total_validations == 60
    assert refresher.status.fold_lag_s is not None
    assert await repo.purge_expired_cache(timedelta(days=365)) >= 0
