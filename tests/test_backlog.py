"""The rollup's backlog (migration 0014): the refresh folds the window's deltas only, slices fold
the older ones. Here: the plans every new statement runs with (as executed inside the functions,
captured by auto_explain; the functions plan their delta statements generically), right after a
backfill (statistics of the delta queue stale) and after ANALYZE; the generic plans of the two
new repository-side statements; the backlog in the refresher's status and Prometheus metrics.
Exactness under deferred folds is in test_rollup.py and test_metrics_range.py."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from acgs_db import MetricsRefresher
from acgs_db.metrics import Metrics
from acgs_db.pool import create_pool
from acgs_db.refresher import Backlog
from acgs_db.resources import load_sql
from acgs_db.settings import Settings

DELTA = "validation_rollup_delta"
BUCKET_INDEX = "validation_rollup_delta_bucket"
ROWS = """
INSERT INTO constitutional_validations
    (tenant_id, decision_id, compliance_score, processing_time_ms, created_at)
SELECT 'k-' || mod(g, 20), 'd-' || mod(g, 17), mod(g * 7, 10001) / 10000.0, mod(g * 13, 900),
       now() - %(newest)s::interval - mod(g::bigint * 104729, %(spread)s) * interval '1 second'
FROM generate_series(1, %(rows)s) AS g
"""


def _rows(conn: psycopg.Connection[Any], rows: int, newest: str, spread_s: int) -> None:
    conn.execute(ROWS, {"rows": rows, "newest": newest, "spread": spread_s})


@pytest.fixture
def backfilled(migrated_database: str) -> str:
    """20,000 rows in the window, folded and VACUUM ANALYZEd; then a backfill of 60,000 rows
    1-20 days old, not analyzed (the statistics of the delta queue are stale, as right after
    a backfill)."""
    with psycopg.connect(migrated_database, autocommit=True) as conn:
        _rows(conn, 20_000, "0 seconds", 86_000)
        conn.execute("SELECT fold_validation_rollup()")
        conn.execute("SELECT refresh_tenant_metrics_24h()")
        conn.execute("VACUUM ANALYZE")
        _rows(conn, 60_000, "26 hours", 20 * 86_400)
    return migrated_database


def _executed_plans(url: str, statement: str) -> list[tuple[str, dict[str, Any]]]:
    """(query text, plan) of every statement ``statement`` runs, nested ones included."""
    notices: list[str] = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        conn.execute("LOAD 'auto_explain'")
        for setting in (
            "auto_explain.log_min_duration = 0",
            "auto_explain.log_level = notice",
            "auto_explain.log_nested_statements = on",
            "auto_explain.log_format = json",
        ):
            conn.execute(sql.SQL("SET {}").format(sql.SQL(setting)))
        conn.execute(sql.SQL(statement))
    plans = []
    for notice in notices:
        if "plan:" in notice:
            body = json.loads(notice.split("plan:", 1)[1])
            plans.append((str(body["Query Text"]), dict(body["Plan"])))
    assert plans
    return plans


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _delta_reads(plans: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, str, str]]:
    """(query text, node type, index) of every node reading the delta queue or its indexes."""
    reads = []
    for text, plan in plans:
        for node in _nodes(plan):
            index = str(node.get("Index Name", ""))
            if node.get("Relation Name") == DELTA or index.startswith(DELTA):
                reads.append((text, str(node["Node Type"]), index))
    return reads


def _deletes_of_the_queue(plans: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    return [
        node
        for _, plan in plans
        for node in _nodes(plan)
        if node["Node Type"] == "ModifyTable" and node.get("Relation Name") == DELTA
    ]


def _assert_delete_through_bucket_index(plans: list[tuple[str, dict[str, Any]]]) -> None:
    [delete] = _deletes_of_the_queue(plans)
    assert delete["Operation"] == "Delete"
    indexes = {str(n.get("Index Name")) for n in _nodes(delete) if "Index Name" in n}
    assert indexes == {BUCKET_INDEX}
    assert not [n for n in _nodes(delete) if n["Node Type"] == "Seq Scan"]


@pytest.mark.parametrize("analyzed", [False, True], ids=["stale-statistics", "analyzed"])
def test_the_refresh_reads_the_window_of_the_queue_through_its_indexes(
    backfilled: str, analyzed: bool
) -> None:
    if analyzed:
        with psycopg.connect(backfilled, autocommit=True) as conn:
            conn.execute("ANALYZE validation_rollup_delta")
    plans = _executed_plans(backfilled, "SELECT refresh_tenant_metrics_24h()")
    _assert_delete_through_bucket_index(plans)
    reads = _delta_reads(plans)
    assert reads
    # The fold, the view's tenant list and each tenant's pending deltas: never a Seq Scan of
    # the queue, which holds the whole backfill.
    assert not [r for r in reads if r[1] == "Seq Scan"], reads
    assert {r[2] for r in reads} <= {BUCKET_INDEX, f"{DELTA}_tenant", ""}
    with psycopg.connect(backfilled) as conn:
        left = conn.execute("SELECT delta_rows FROM rollup_backlog()").fetchone()
    assert left is not None and left[0] > 10_000  # the backfill still waits


@pytest.mark.parametrize("analyzed", [False, True], ids=["stale-statistics", "analyzed"])
def test_a_slice_reads_its_buckets_through_the_bucket_index(
    backfilled: str, analyzed: bool
) -> None:
    with psycopg.connect(backfilled, autocommit=True) as conn:
        conn.execute("SELECT refresh_tenant_metrics_24h()")
        if analyzed:
            conn.execute("ANALYZE validation_rollup_delta")
    plans = _executed_plans(backfilled, "SELECT fold_rollup_backlog(6)")
    _assert_delete_through_bucket_index(plans)
    reads = _delta_reads(plans)
    assert not [r for r in reads if r[1] == "Seq Scan"], reads
    # The oldest pending bucket: the first entry of the bucket index, no scan of the backlog.
    [oldest] = [r for r in reads if "min(d.bucket)" in r[0]]
    assert oldest[1] in ("Index Only Scan", "Index Scan") and oldest[2] == BUCKET_INDEX


def test_the_backlog_count_reads_the_bucket_index_while_the_statistics_are_stale(
    backfilled: str,
) -> None:
    with psycopg.connect(backfilled, autocommit=True) as conn:
        conn.execute("SELECT refresh_tenant_metrics_24h()")
    plans = _executed_plans(backfilled, "SELECT * FROM rollup_backlog()")
    reads = _delta_reads(plans)
    assert reads and all(r[2] == BUCKET_INDEX for r in reads), reads


@pytest.mark.parametrize(("query", "args"), [("backlog", ()), ("backlog_slice", (6,))])
def test_the_backlog_statements_are_one_function_call_in_their_generic_plan(
    backfilled: str, query: str, args: tuple[int, ...]
) -> None:
    with psycopg.connect(backfilled, autocommit=True, cursor_factory=psycopg.ClientCursor) as conn:
        conn.execute("SET plan_cache_mode = force_generic_plan")
        name = sql.Identifier(f"plan_{query}")
        text = sql.SQL(load_sql(f"queries/{query}"))
        conn.execute(sql.SQL("PREPARE {} AS {}").format(name, text))
        execute = sql.SQL("EXPLAIN (FORMAT JSON) EXECUTE {}").format(name)
        if args:
            execute = sql.SQL("{} ({})").format(
                execute, sql.SQL(", ").join(sql.Placeholder() * len(args))
            )
        row = conn.execute(execute, args).fetchone()
    assert row is not None
    nodes = list(_nodes(row[0][0]["Plan"]))
    # A function scan or a projection of one call: no table is read by the statement itself.
    assert {n["Node Type"] for n in nodes} <= {"Result", "Function Scan"}
    assert not [n for n in nodes if "Relation Name" in n]


# -- the refresher: slices between refreshes, backlog in status and Prometheus ---------------


def _sample(metrics: Metrics, name: str) -> float:
    value = metrics.registry.get_sample_value(name, {})
    assert value is not None, name
    return value


async def test_the_refresher_reports_and_drains_the_backlog(backfilled: str) -> None:
    settings = Settings.from_env({"ACGS_BACKLOG_SLICE_BUCKETS": "48"})
    metrics = Metrics()
    pool = await create_pool(backfilled, settings=settings, min_size=1, max_size=2)
    try:
        worker = MetricsRefresher(pool, settings=settings, metrics=metrics)
        await worker.refresh_once()
        before = await worker.read_backlog()
        with psycopg.connect(backfilled) as conn:
            row = conn.execute(
                "SELECT count(*), count(DISTINCT bucket), min(bucket)"
                " FROM validation_rollup_delta WHERE bucket < rollup_window_line()"
            ).fetchone()
        assert row is not None and before == Backlog(int(row[0]), int(row[1]), row[2])
        assert before.delta_rows > 10_000 and before.oldest_bucket is not None
        assert _sample(metrics, "acgs_db_rollup_backlog_delta_rows") == before.delta_rows
        assert _sample(metrics, "acgs_db_rollup_backlog_buckets") == before.buckets
        assert _sample(
            metrics, "acgs_db_rollup_backlog_oldest_bucket_timestamp_seconds"
        ) == pytest.approx(before.oldest_bucket.timestamp())
        # A budget of 0: one slice, then the backlog is read again.
        first = await worker.drain_backlog(budget=0)
        assert 0 < first < before.delta_rows
        assert worker.status.backlog_slices == 1
        assert worker.status.backlog is not None
        assert worker.status.backlog.delta_rows == before.delta_rows - first
        assert worker.status.backlog.buckets == before.buckets - 48
        # No budget: until nothing is left (the last slice folds nothing).
        rest = await worker.drain_backlog(budget=float("inf"))
        assert first + rest == before.delta_rows
        assert worker.status.backlog == Backlog(0, 0, None)
        assert worker.status.backlog_folded_rows == before.delta_rows
        # The first, one per 48 hours left, and the last that found nothing.
        assert worker.status.backlog_slices == 2 + math.ceil((before.buckets - 48) / 48)
        assert _sample(metrics, "acgs_db_rollup_backlog_delta_rows") == 0
        assert _sample(metrics, "acgs_db_rollup_backlog_oldest_bucket_timestamp_seconds") == 0
        assert _sample(metrics, "acgs_db_rollup_backlog_slices_total") == (
            worker.status.backlog_slices
        )
        assert _sample(metrics, "acgs_db_rollup_backlog_folded_delta_rows_total") == (
            before.delta_rows
        )
    finally:
        await pool.close()


async def test_the_refresher_loop_drains_the_backlog_between_refreshes(backfilled: str) -> None:
    # 480 hours of backlog, 120 per slice: a few loop turns (a busy machine makes them slow).
    settings = Settings.from_env({"ACGS_BACKLOG_SLICE_BUCKETS": "120"})
    pool = await create_pool(backfilled, settings=settings, min_size=1, max_size=2)
    try:
        worker = MetricsRefresher(pool, 0.2, settings=settings, recover=False, seal=False)
        worker.start()
        for _ in range(3000):
            backlog = worker.status.backlog
            if worker.status.refreshes and backlog is not None and backlog.delta_rows == 0:
                break
            await asyncio.sleep(0.1)
        await worker.stop()
        assert worker.status.backlog == Backlog(0, 0, None)
        assert worker.status.backlog_slices > 1 and worker.status.backlog_failures == 0
        with psycopg.connect(backfilled) as conn:
            assert conn.execute("SELECT count(*) FROM validation_rollup_delta").fetchone() == (0,)
    finally:
        await pool.close()
