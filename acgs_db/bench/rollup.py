"""``acgs-db bench refresh``: the 24-hour view's cost, exactness and effect on readers.

Each scenario runs in a scratch database (:mod:`acgs_db.bench.scratch`), with rows generated on
the server (``sql/bench/generate_rows.sql``: time-ordered, log-normal processing times), and
prints ratios against baselines measured in the same run:

* **window**: W rows in the last 24 hours, then 300,000 new ones written through the repository
  in batches of 1,000 (five minutes at 1,000 rows/s); fold + refresh against a full recompute of
  the seed's SQL on the raw rows; the view checked equal to the seed's SQL (EXCEPT both ways).
* **old data**: 1,000,000 rows in the window, then 9,000,000 older rows in the same monthly
  partition written just before the refresh (no VACUUM, BRIN ranges unsummarized): the refresh
  right after, after VACUUM ANALYZE and after the backlog slices drained the older deltas,
  each against the refresh of the window alone; the view checked exact while they wait.
* **load**: ``acgs-db load`` of 10,000,000 rows over 30 days: the loader's first refresh
  against a steady refresh (backlog drained).
* **tenant**: one tenant with 50,000 rows in its last 24 hours: ``tenant_metrics()`` computed in
  real time (p50/p99), against the seed's SQL for that tenant on the raw rows.
* **readers**: the longest wait of a reader querying the view in a loop while the view is
  refreshed CONCURRENTLY, against the same with a plain REFRESH.
* **capture**: rows/s of ``bulk_insert`` with the rollup's capture trigger and without it. (The
  alternative once measured here, an invalidation log, was rejected: README, Exact 24-hour
  metrics.)
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import sql

from acgs_db.bench.pgbench import Percentiles
from acgs_db.bench.scratch import scratch_database
from acgs_db.pool import AnyConnection, create_pool
from acgs_db.repository import ValidationRepository
from acgs_db.resources import load_sql
from acgs_db.settings import Settings
from acgs_db.tooling.synthetic import Workload, generate

_LONG = 7200.0
_CHUNK = 500_000


@dataclass(frozen=True, slots=True)
class Options:
    """Sizes of the scenarios (the issues' figures by default)."""

    windows: tuple[int, ...] = (5_000_000, 20_000_000)
    new_rows: int = 300_000
    batch_rows: int = 1000
    tenants: int = 100
    decisions: int = 1000
    window_alone: int = 1_000_000
    old_rows: int = 9_000_000
    load_rows: int = 10_000_000
    load_days: float = 30
    tenant_rows: int = 50_000
    tenant_calls: int = 2000
    capture_rows: int = 500_000
    capture_rounds: int = 3
    repeats: int = 3


def _seed() -> sql.Composable:
    return sql.SQL(load_sql("schema/seed_metrics_24h"))


async def _timed(call: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await call()
    return time.perf_counter() - started


async def generate_rows(
    conn: AnyConnection,
    rows: int,
    start: datetime,
    end: datetime,
    options: Options,
    tenant: str | None = None,
) -> float:
    """Write ``rows`` generated rows spread evenly between start and end; return seconds."""
    started = time.perf_counter()
    done = 0
    span = end - start
    while done < rows:
        n = min(_CHUNK, rows - done)
        await conn.execute(
            load_sql("bench/generate_rows"),
            n,
            options.tenants,
            start + span * (done / rows),
            start + span * ((done + n) / rows),
            options.decisions,
            tenant,
            timeout=_LONG,
        )
        done += n
    return time.perf_counter() - started


async def _seed_recompute(conn: AnyConnection) -> float:
    """Seconds to evaluate the seed's definition on the raw rows (the full recompute)."""
    query = sql.SQL(load_sql("bench/seed_count")).format(seed=_seed()).as_string(None)
    return await _timed(lambda: conn.fetchval(query, timeout=_LONG))


async def _exact(conn: AnyConnection) -> bool:
    """Refresh, then compare the view with the seed's SQL both ways in the same transaction."""
    view = sql.SQL(load_sql("bench/view_rows"))
    differences = []
    async with conn.transaction():
        await conn.execute(load_sql("queries/refresh"), timeout=_LONG)
        for left, right in ((view, _seed()), (_seed(), view)):
            query = sql.SQL(load_sql("bench/except_count")).format(left=left, right=right)
            differences.append(await conn.fetchval(query.as_string(None), timeout=_LONG))
    return differences == [0, 0]


async def _refresh(conn: AnyConnection) -> float:
    return await _timed(lambda: conn.fetchval(load_sql("queries/refresh"), timeout=_LONG))


async def scenario_window(url: str, window: int, options: Options) -> dict[str, Any]:
    """``window`` rows in the last 24 hours, then new rows: fold + refresh vs full recompute."""
    settings = Settings.from_env()
    pool = await create_pool(url, settings=settings, min_size=2, max_size=2)
    try:
        async with pool.acquire() as conn:
            now = datetime.now(UTC)
            load_s = await generate_rows(
                conn, window, now - timedelta(hours=23, minutes=55), now, options
            )
            backlog_s = await _timed(lambda: conn.fetchval(load_sql("bench/fold"), timeout=_LONG))
            await conn.execute(load_sql("bench/vacuum_analyze"), timeout=_LONG)
            await conn.execute(load_sql("bench/vacuum_rollup"), timeout=_LONG)
            await _refresh(conn)
            steady = [await _refresh(conn) for _ in range(options.repeats)]
            recompute = [await _seed_recompute(conn) for _ in range(options.repeats)]
        repo = ValidationRepository(pool, settings)
        new = list(
            generate(
                Workload(
                    rows=options.new_rows,
                    tenants=options.tenants,
                    days=5 / 1440,
                    decisions=options.decisions,
                    seed=5,
                )
            )
        )
        write_started = time.perf_counter()
        for i in range(0, len(new), options.batch_rows):
            await repo.bulk_insert(new[i : i + options.batch_rows])
        write_s = time.perf_counter() - write_started
        async with pool.acquire() as conn:
            pending = await conn.fetchval(load_sql("bench/count_deltas"))
            fold_s = await _timed(lambda: conn.fetchval(load_sql("bench/fold"), timeout=_LONG))
            refresh_s = await _refresh(conn)
            exact = await _exact(conn)
            rollup_rows = await conn.fetchval(load_sql("bench/count_rollup_window"))
    finally:
        await pool.close()
    full = statistics.median(recompute)
    return {
        "window_rows": window,
        "generate_s": round(load_s, 1),
        "first_fold_s": round(backlog_s, 2),
        "refresh_steady_s": round(statistics.median(steady), 3),
        "seed_full_recompute_s": round(full, 3),
        "new_rows": options.new_rows,
        "new_rows_write_s": round(write_s, 1),
        "pending_delta_rows": pending,
        "fold_s": round(fold_s, 3),
        "refresh_s": round(refresh_s, 3),
        "fold_plus_refresh_s": round(fold_s + refresh_s, 3),
        "ratio_to_full_recompute": round((fold_s + refresh_s) / full, 3),
        "rollup_rows_in_window": rollup_rows,
        "view_equals_seed_sql": exact,
    }


async def _backlog(conn: AnyConnection) -> dict[str, Any]:
    row = await conn.fetchrow(load_sql("queries/backlog"), timeout=_LONG)
    assert row is not None
    oldest = row["oldest_bucket"]
    return {
        "delta_rows": row["delta_rows"],
        "buckets": row["buckets"],
        "oldest_bucket": None if oldest is None else oldest.isoformat(timespec="seconds"),
    }


async def _drain(conn: AnyConnection, buckets: int) -> dict[str, Any]:
    """Fold the backlog slice by slice (each its own transaction, as the refresher does)."""
    slices: list[float] = []
    folded = 0
    while True:
        started = time.perf_counter()
        rows = await conn.fetchval(load_sql("queries/backlog_slice"), buckets, timeout=_LONG)
        slices.append(time.perf_counter() - started)
        folded += rows
        if rows == 0:
            break
    return {
        "slice_buckets": buckets,
        "slices": len(slices) - 1,
        "folded_delta_rows": folded,
        "drain_s": round(sum(slices), 2),
        "longest_slice_s": round(max(slices), 3),
    }


async def scenario_old_data(url: str, options: Options) -> dict[str, Any]:
    """Refresh with the window alone, then right after many older rows are written into the
    same partition (their deltas left to backlog slices), again after VACUUM ANALYZE, and after
    the backlog is drained; ratios to the window alone, the view checked exact throughout."""
    settings = Settings.from_env()
    pool = await create_pool(url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            await conn.execute(load_sql("bench/no_statement_timeout"))
            await conn.execute(load_sql("bench/empty_tables"), timeout=_LONG)
            now = datetime.now(UTC)
            await generate_rows(
                conn, options.window_alone, now - timedelta(hours=23, minutes=55), now, options
            )
            await conn.fetchval(load_sql("bench/fold"), timeout=_LONG)
            await conn.execute(load_sql("bench/vacuum_analyze"), timeout=_LONG)
            await _refresh(conn)
            alone = statistics.median([await _refresh(conn) for _ in range(options.repeats)])
            # Older rows of the same month, written just now: no VACUUM, BRIN unsummarized.
            month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
            old_end = now - timedelta(hours=25)
            if old_end - month_start < timedelta(days=5):  # early in the month: 20 days back
                month_start = old_end - timedelta(days=20)
            await generate_rows(conn, options.old_rows, month_start, old_end, options)
            after = [await _refresh(conn) for _ in range(options.repeats)]
            backlog = await _backlog(conn)
            exact_pending = await _exact(conn)
            await conn.execute(load_sql("bench/vacuum_analyze_all"), timeout=_LONG)
            vacuumed = [await _refresh(conn) for _ in range(options.repeats)]
            drained = await _drain(conn, settings.backlog_slice_buckets)
            await conn.execute(load_sql("bench/vacuum_analyze_all"), timeout=_LONG)
            settled = [await _refresh(conn) for _ in range(options.repeats)]
            exact = await _exact(conn)
            left = await _backlog(conn)
    finally:
        await pool.close()
    return {
        "window_rows": options.window_alone,
        "older_rows_same_partition": options.old_rows,
        "refresh_window_alone_s": round(alone, 3),
        "first_refresh_after_load_s": round(after[0], 3),
        "refresh_after_load_s": round(statistics.median(after), 3),
        "ratio_first_after_load": round(after[0] / alone, 2),
        "ratio_after_load": round(statistics.median(after) / alone, 2),
        "backlog_after_load": backlog,
        "view_equals_seed_sql_with_backlog_pending": exact_pending,
        "refresh_after_vacuum_analyze_s": round(statistics.median(vacuumed), 3),
        "ratio_after_vacuum_analyze": round(statistics.median(vacuumed) / alone, 2),
        "backlog_drain": drained,
        "refresh_after_drain_s": round(statistics.median(settled), 3),
        "ratio_after_drain": round(statistics.median(settled) / alone, 2),
        "backlog_left": left,
        "view_equals_seed_sql": exact,
    }


async def scenario_load(url: str, options: Options) -> dict[str, Any]:
    """``acgs-db load --rows N --days D``: the first refresh after the load (the loader's own,
    after it folded the load's deltas and ran VACUUM ANALYZE) against a steady refresh; the
    fold the load paid for is reported beside it."""
    from acgs_db.tooling.loader import load

    settings = Settings.from_env()
    pool = await create_pool(url, settings=settings, min_size=1, max_size=2)
    try:
        workload = Workload(
            rows=options.load_rows,
            tenants=options.tenants,
            days=options.load_days,
            decisions=options.decisions,
        )
        loaded = await load(pool, workload, settings=settings)
        async with pool.acquire() as conn:
            await conn.execute(load_sql("bench/no_statement_timeout"))
            backlog = await _backlog(conn)
            drained = await _drain(conn, settings.backlog_slice_buckets)
            await conn.execute(load_sql("bench/vacuum_analyze_all"), timeout=_LONG)
            await _refresh(conn)
            steady = statistics.median([await _refresh(conn) for _ in range(options.repeats)])
            exact = await _exact(conn)
    finally:
        await pool.close()
    return {
        "rows": options.load_rows,
        "days": options.load_days,
        "load_copy_s": round(loaded.copy_seconds, 1),
        "load_folded_deltas": loaded.folded_deltas,
        "load_fold_s": round(loaded.fold_seconds, 1),
        "first_refresh_after_load_s": round(loaded.refresh_seconds, 3),
        "backlog_after_first_refresh": backlog,
        "backlog_drain": drained,
        "refresh_steady_s": round(steady, 3),
        "ratio_first_to_steady": round(loaded.refresh_seconds / steady, 2),
        "view_equals_seed_sql": exact,
    }


async def scenario_tenant(url: str, options: Options) -> dict[str, Any]:
    """Real-time figures of one tenant with ``tenant_rows`` rows in its last 24 hours."""
    settings = Settings.from_env(metrics_staleness=0.0)  # always computed in real time
    pool = await create_pool(url, settings=settings, min_size=1, max_size=1)
    tenant = "tenant-hot"
    try:
        async with pool.acquire() as conn:
            now = datetime.now(UTC)
            await generate_rows(
                conn,
                options.tenant_rows,
                now - timedelta(hours=23, minutes=59),
                now,
                options,
                tenant=tenant,
            )
            await conn.fetchval(load_sql("bench/fold"), timeout=_LONG)
            await conn.execute(load_sql("bench/vacuum_analyze"), timeout=_LONG)
            seed_one = sql.SQL(load_sql("bench/seed_tenant")).format(seed=_seed())
            seed_query = seed_one.as_string(None)
            seed_micros = []
            for _ in range(50):
                started = time.perf_counter_ns()
                await conn.fetch(seed_query, tenant)
                seed_micros.append((time.perf_counter_ns() - started) // 1000)
        repo = ValidationRepository(pool, settings)
        metrics = await repo.tenant_metrics(tenant)
        assert metrics is not None and metrics.source == "realtime"
        micros = []
        for _ in range(options.tenant_calls):
            started = time.perf_counter_ns()
            await repo.tenant_metrics(tenant)
            micros.append((time.perf_counter_ns() - started) // 1000)
    finally:
        await pool.close()
    realtime, seed = Percentiles.of(micros), Percentiles.of(seed_micros)
    assert realtime is not None and seed is not None
    return {
        "tenant_rows_24h": options.tenant_rows,
        "total_validations": metrics.total_validations,
        "tenant_metrics_realtime_ms": realtime.to_json(),
        "seed_sql_one_tenant_ms": seed.to_json(),
    }


async def scenario_readers(url: str, options: Options) -> dict[str, Any]:
    """Longest wait of a reader of the view during refreshes, CONCURRENTLY vs plain."""
    pool = await create_pool(url, min_size=2, max_size=2)
    try:

        async def worst_wait(statement: str) -> tuple[float, float]:
            stop = asyncio.Event()
            waits: list[float] = []

            async def reader() -> None:
                async with pool.acquire() as conn:
                    while not stop.is_set():
                        started = time.perf_counter()
                        await conn.fetch(load_sql("bench/view_reader"), timeout=_LONG)
                        waits.append(time.perf_counter() - started)

            task = asyncio.create_task(reader())
            async with pool.acquire() as conn:
                refresh_s = await _timed(lambda: conn.execute(statement, timeout=_LONG))
            stop.set()
            await task
            return max(waits), refresh_s

        concurrent_wait, concurrent_s = await worst_wait(load_sql("bench/refresh_concurrently"))
        plain_wait, plain_s = await worst_wait(load_sql("bench/refresh_plain"))
    finally:
        await pool.close()
    return {
        "reader_longest_wait_ms_concurrently": round(concurrent_wait * 1000, 1),
        "refresh_concurrently_s": round(concurrent_s, 3),
        "reader_longest_wait_ms_plain_refresh": round(plain_wait * 1000, 1),
        "refresh_plain_s": round(plain_s, 3),
    }


async def scenario_capture(url: str, options: Options) -> dict[str, Any]:
    """bulk_insert rows/s with the capture trigger and without it."""
    settings = Settings.from_env()
    pool = await create_pool(url, settings=settings, min_size=2, max_size=2)
    repo = ValidationRepository(pool, settings)
    records = list(
        generate(
            Workload(
                rows=options.capture_rows,
                tenants=options.tenants,
                days=2,
                decisions=options.decisions,
            )
        )
    )
    variants = {
        "no_trigger": "bench/capture_none",
        "delta_trigger": "bench/capture_delta",
    }
    rates: dict[str, list[float]] = {name: [] for name in variants}
    try:
        async with pool.acquire() as conn:
            for _ in range(options.capture_rounds):
                for name, setup in variants.items():
                    await conn.execute(load_sql("bench/empty_tables"), timeout=_LONG)
                    await conn.execute(load_sql(setup))
                    await conn.execute(load_sql("bench/checkpoint"), timeout=_LONG)
                    seconds = await _timed(lambda: repo.bulk_insert(records))
                    rates[name].append(len(records) / seconds)
            await conn.execute(load_sql("bench/capture_delta"))
            await conn.execute(load_sql("bench/empty_tables"), timeout=_LONG)
    finally:
        await pool.close()
    medians = {name: statistics.median(values) for name, values in rates.items()}
    return {
        "rows": options.capture_rows,
        **{f"{name}_rows_s": round(rate) for name, rate in medians.items()},
        "ratio_delta_trigger_to_none": round(medians["delta_trigger"] / medians["no_trigger"], 3),
    }


def run(
    url: str,
    options: Options,
    scenarios: tuple[str, ...] = ("capture", "tenant", "readers", "old", "window"),
) -> dict[str, Any]:
    """Run the chosen scenarios, each in its own scratch database."""
    results: dict[str, Any] = {"options": asdict(options)}
    steps: dict[str, Callable[[str], Coroutine[Any, Any, dict[str, Any]]]] = {
        "capture": lambda u: scenario_capture(u, options),
        "tenant": lambda u: scenario_tenant(u, options),
        "readers": lambda u: _readers_after_window(u, options),
        "old": lambda u: scenario_old_data(u, options),
        "load": lambda u: scenario_load(u, options),
    }
    for name in scenarios:
        if name == "window":
            results["window"] = []
            for size in options.windows:
                with scratch_database(url) as scratch:
                    results["window"].append(asyncio.run(scenario_window(scratch, size, options)))
            if len(results["window"]) > 1:
                first, last = results["window"][0], results["window"][-1]
                results["window_growth"] = round(
                    last["fold_plus_refresh_s"] / first["fold_plus_refresh_s"], 2
                )
            continue
        with scratch_database(url) as scratch:
            results[name] = asyncio.run(steps[name](scratch))
    return results


async def _readers_after_window(url: str, options: Options) -> dict[str, Any]:
    """The reader scenario on a window of ``window_alone`` rows."""
    pool = await create_pool(url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            now = datetime.now(UTC)
            await generate_rows(
                conn, options.window_alone, now - timedelta(hours=23, minutes=55), now, options
            )
            await conn.fetchval(load_sql("queries/refresh"), timeout=_LONG)
    finally:
        await pool.close()
    return await scenario_readers(url, options)
