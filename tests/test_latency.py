"""Plans and latency of every repository query on a realistic data set (marker ``latency``).

Each statement of ``sql/queries`` is PREPAREd as the repository sends it and EXPLAINed as the
generic plan (``plan_cache_mode = force_generic_plan``: what a prepared statement ends up
running), so a lost index or a new sequential scan of the big table fails here. Each query
then runs a few thousand times through :class:`ValidationRepository` on one connection whose
query logger counts the statements sent: exactly one per call (no N+1, no extra round trip).
Times are not asserted here (a shared machine makes them noise): the seed's 10 ms p99 is a goal
of the benchmarks (`acgs-db bench repository`, `acgs-db bench pgbench`), which print it.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from asyncpg.connection import LoggedQuery
from psycopg import sql
from psycopg.types.json import Jsonb

from acgs_db import CONSTITUTIONAL_HASH, ValidationRecord, ValidationRepository
from acgs_db.pool import Pool, create_pool
from acgs_db.refresher import MetricsRefresher
from acgs_db.resources import load_sql
from acgs_db.settings import Settings
from acgs_db.tooling.loader import LoadResult, load
from acgs_db.tooling.synthetic import Workload, decision_hash, decision_name, tenant_name

pytestmark = pytest.mark.latency

# 100k rows over 60 days (three monthly partitions hold rows), ~10 validations per decision.
WORKLOAD = Workload(rows=100_000, tenants=50, days=60, decisions=200)
SETTINGS = Settings.from_env({})
CALLS = 2000


@pytest.fixture(scope="module")
async def loaded(module_database: str) -> AsyncIterator[LoadResult]:
    """The data set, loaded and VACUUM (ANALYZE)d by the loader, so plans are realistic."""
    pool = await create_pool(module_database, min_size=1, max_size=2)
    try:
        yield await load(pool, WORKLOAD, settings=SETTINGS)
    finally:
        await pool.close()


# -- plans ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def planner(module_database: str, loaded: LoadResult) -> Iterator[psycopg.Connection]:
    """A connection that plans prepared statements generically and inlines arguments."""
    with psycopg.connect(
        module_database, autocommit=True, cursor_factory=psycopg.ClientCursor
    ) as conn:
        conn.execute("SET plan_cache_mode = force_generic_plan")
        yield conn


def _plan(conn: psycopg.Connection, query: str, *args: object) -> dict[str, Any]:
    """The generic plan of ``sql/queries/<query>.sql`` for these arguments (EXPLAIN EXECUTE)."""
    name = sql.Identifier(f"latency_{query}")
    conn.execute(sql.SQL("PREPARE {} AS {}").format(name, sql.SQL(load_sql(f"queries/{query}"))))
    try:
        row = conn.execute(
            sql.SQL("EXPLAIN (FORMAT JSON) EXECUTE {} ({})").format(
                name, sql.SQL(", ").join(sql.Placeholder() * len(args))
            ),
            args,
        ).fetchone()
    finally:
        conn.execute(sql.SQL("DEALLOCATE {}").format(name))
    assert row is not None
    return dict(row[0][0]["Plan"])


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _parent_index(conn: psycopg.Connection, index: str) -> str:
    """The index on the partitioned table that a partition's index belongs to."""
    row = conn.execute(
        "SELECT p.relname FROM pg_inherits i"
        " JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent"
        " WHERE c.relname = %s",
        (index,),
    ).fetchone()
    return index if row is None else str(row[0])


def _partitions_with_rows(conn: psycopg.Connection) -> set[str]:
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'constitutional_validations'::regclass AND c.reltuples > 0"
    ).fetchall()
    return {r[0] for r in rows}


def _partitions(conn: psycopg.Connection) -> set[str]:
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'constitutional_validations'::regclass"
    ).fetchall()
    return {r[0] for r in rows}


def _scans(plan: dict[str, Any], partitions: set[str]) -> list[dict[str, Any]]:
    """The plan's scan nodes that read one of ``partitions``."""
    return [n for n in _nodes(plan) if n.get("Relation Name") in partitions]


def test_the_data_set_spans_several_partitions(planner: psycopg.Connection) -> None:
    assert len(_partitions_with_rows(planner)) >= 3


def test_history_is_the_partition_walk(planner: psycopg.Connection) -> None:
    # acgs_history() (migration 0013): one statement per partition, newest first; its inner
    # plans (the primary key backwards, no sort, generic) are checked by test_history_walk.py.
    plan = _plan(planner, "history", tenant_name(1), decision_name(1, 7), CONSTITUTIONAL_HASH, 10)
    assert (plan["Node Type"], plan.get("Function Name")) == ("Function Scan", "acgs_history")
    assert not _scans(plan, _partitions(planner))


def test_decision_look_up_is_an_index_only_scan_of_the_decision_index(
    planner: psycopg.Connection,
) -> None:
    plan = _plan(planner, "decision_scores", decision_name(1, 7), CONSTITUTIONAL_HASH)
    with_rows = _partitions_with_rows(planner)
    scans = _scans(plan, with_rows)
    assert {s["Relation Name"] for s in scans} == with_rows
    for scan in scans:
        assert scan["Node Type"] == "Index Only Scan"
        assert (
            _parent_index(planner, scan["Index Name"])
            == "idx_constitutional_validations_decision_lookup"
        )
    # Empty (premade) partitions cost nothing whichever way they are read.
    assert not [
        n for n in _nodes(plan) if n["Node Type"] == "Seq Scan" and n["Relation Name"] in with_rows
    ]


def test_metrics_read_the_view_and_never_scan_a_partition_sequentially(
    planner: psycopg.Connection,
) -> None:
    plan = _plan(planner, "metrics", tenant_name(1), CONSTITUTIONAL_HASH, SETTINGS.staleness)
    relations = {n.get("Relation Name") for n in _nodes(plan)}
    assert "tenant_constitutional_metrics_24h" in relations
    with_rows = _partitions_with_rows(planner)
    assert not [
        n for n in _nodes(plan) if n["Node Type"] == "Seq Scan" and n["Relation Name"] in with_rows
    ]


def test_cache_look_up_is_a_primary_key_look_up(planner: psycopg.Connection) -> None:
    plan = _plan(
        planner,
        "cache_get",
        tenant_name(1),
        decision_hash(1, 7),
        CONSTITUTIONAL_HASH,
        timedelta(minutes=5),
    )
    assert (plan["Node Type"], plan["Index Name"]) == (
        "Index Scan",
        "decision_validation_cache_pkey",
    )


def test_single_insert_reads_nothing(planner: psycopg.Connection) -> None:
    plan = _plan(
        planner,
        "insert",
        tenant_name(1),
        decision_name(1, 7),
        CONSTITUTIONAL_HASH,
        0.97,
        Jsonb({"rule_set": "fairness-v3"}),
        4,
        None,
    )
    assert (plan["Node Type"], plan["Operation"]) == ("ModifyTable", "Insert")
    assert [n["Node Type"] for n in _nodes(plan)] == ["ModifyTable", "Result"]


# -- one statement per call through the repository ------------------------------------------


class Counted:
    """A repository on a one-connection pool whose statements are counted as they are sent
    (all but the reset query the pool itself sends when a connection is released)."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.repo = ValidationRepository(pool, SETTINGS)
        self.statements = 0
        self._reset_query = ""

    def _log(self, record: LoggedQuery) -> None:
        if record.query != self._reset_query:
            self.statements += 1

    async def start(self) -> None:
        async with self.pool.acquire() as conn:
            self._reset_query = conn.get_reset_query()
            conn.add_query_logger(self._log)

    async def calls(self, call: Callable[[int], Awaitable[object]]) -> int:
        """Run ``call(i)`` CALLS times; return the statements sent."""
        await _settle()
        before = self.statements
        for i in range(CALLS):
            await call(i)
        await _settle()
        return self.statements - before


async def _settle() -> None:
    """Let the query loggers of statements already sent run (they are called soon after)."""
    for _ in range(3):
        await asyncio.sleep(0)


@pytest.fixture(scope="module")
async def counted(module_database: str, loaded: LoadResult) -> AsyncIterator[Counted]:
    pool = await create_pool(module_database, min_size=1, max_size=1)
    counted = Counted(pool)
    await counted.start()
    try:
        yield counted
    finally:
        await pool.close()


def _ids(seed: int) -> list[tuple[int, int]]:
    rng = random.Random(seed)
    return [
        (rng.randrange(WORKLOAD.tenants), rng.randrange(WORKLOAD.decisions)) for _ in range(CALLS)
    ]


async def test_history_is_one_statement_per_call(counted: Counted) -> None:
    ids, found = _ids(1), []

    async def call(i: int) -> None:
        t, k = ids[i]
        found.append(len(await counted.repo.history(tenant_name(t), decision_name(t, k))))

    statements = await counted.calls(call)
    assert statements == CALLS
    assert sum(n > 0 for n in found) >= 0.95 * CALLS  # real look-ups, not misses


async def test_decision_look_up_is_one_statement_per_call(counted: Counted) -> None:
    ids, found = _ids(2), []

    async def call(i: int) -> None:
        t, k = ids[i]
        found.append(len(await counted.repo.decision_scores(decision_name(t, k))))

    statements = await counted.calls(call)
    assert statements == CALLS
    assert sum(n > 0 for n in found) >= 0.95 * CALLS


async def test_metrics_from_the_view_are_one_statement_per_call(counted: Counted) -> None:
    await MetricsRefresher(counted.pool, settings=SETTINGS).refresh_once()
    rng, sources = random.Random(3), set()

    async def call(i: int) -> None:
        metrics = await counted.repo.tenant_metrics(tenant_name(rng.randrange(WORKLOAD.tenants)))
        assert metrics is not None
        sources.add(metrics.source)

    statements = await counted.calls(call)
    assert statements == CALLS
    assert sources == {"view"}


async def test_cache_look_up_is_one_statement_per_call(counted: Counted) -> None:
    await counted.pool.execute(load_sql("bench/touch_cache"))
    ids, hits = _ids(4), []

    async def call(i: int) -> None:
        t, k = ids[i]
        hits.append(await counted.repo.get_cached_decision(tenant_name(t), decision_hash(t, k)))

    statements = await counted.calls(call)
    assert statements == CALLS
    assert all(hit is not None for hit in hits)


async def test_single_insert_is_one_statement_per_call(counted: Counted) -> None:
    ids = _ids(5)

    async def call(i: int) -> None:
        t, k = ids[i]
        record = ValidationRecord(
            tenant_name(t), decision_name(t, k), 0.97, {"rule_set": "fairness-v3"}, 4
        )
        await counted.repo.insert(record)

    before = await counted.pool.fetchval("SELECT count(*) FROM constitutional_validations")
    statements = await counted.calls(call)
    after = await counted.pool.fetchval("SELECT count(*) FROM constitutional_validations")
    assert statements == CALLS and after - before == CALLS
