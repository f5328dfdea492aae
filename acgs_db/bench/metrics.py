"""``acgs-db bench metrics``: exact figures over a range, and the real-time 24-hour figures.

In a scratch database (:mod:`acgs_db.bench.scratch`):

* **range**: one tenant with ``range_rows`` rows over ``days`` days (a long tail of processing
  times: thousands of distinct values, ``sql/bench/generate_tail_rows.sql``), among other
  tenants' rows; ``ValidationRepository.tenant_metrics(tenant, since=now - days)`` (p50/p99)
  against the seed's aggregate SQL over the same rows and range, calls interleaved in the same
  run, with the ratio, and both answers checked equal. Then the same range with the function
  of migration 0018 (v4, values read hour by hour where that reads less) and the one before it
  (v3) swapped in alternately,
  two rounds each, with their ratio.
* **24h**: a tenant with ``tenant_rows`` rows in its last 24 hours: the real-time statement
  (``sql/queries/metrics_realtime.sql``, ``tenant_metrics_24h()``) p50/p99 with the function of
  migration 0018 (v6, the chosen bins' values read hour by hour) and the one before it (v5)
  swapped in alternately, for the generator of ``acgs-db bench refresh`` (log-normal times,
  median ~4 ms: a few hundred distinct values), for the long tail above (thousands of distinct
  values in the window) and for the ranged tenant's own window (a long tail with ``days`` of
  history behind it, which v5 read through for the chosen bins).
* **fold**: what keeping the newest bins costs the fold: ``fold_rounds`` times, ``fold_rows``
  new rows (100 tenants, the last hour, in statements of 1,000 rows) folded by the fold of
  migration 0016 (``rollup_fold_v6``) and, alternately, by the previous one (``rollup_fold_v5``,
  swapped in for the measurement: the last step, as it leaves the coarse day bins behind).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import sql

from acgs_db.bench.pgbench import Percentiles
from acgs_db.bench.rollup import Options as RollupOptions
from acgs_db.bench.rollup import generate_rows
from acgs_db.bench.scratch import scratch_database
from acgs_db.pool import AnyConnection, Pool, create_pool
from acgs_db.repository import ValidationRepository
from acgs_db.resources import load_sql
from acgs_db.settings import Settings

_LONG = 7200.0
# The fold of the newest migration (0016) and the one before it; likewise the ranged function.
_FOLDS = ("rollup_fold_v6", "rollup_fold_v5")
_RANGES = ("tenant_metrics_range_v4", "tenant_metrics_range_v3")
_REALTIME = ("tenant_metrics_24h_v6", "tenant_metrics_24h_v5")
_CHUNK = 250_000
_SEED_WINDOW = "WHERE created_at >= NOW() - INTERVAL '24 hours'"
_FIGURES = (
    "total_validations",
    "failed_validations",
    "constitutional_violations",
    "avg_compliance_score",
    "avg_processing_time_ms",
    "p95_processing_time_ms",
    "p99_processing_time_ms",
)


@dataclass(frozen=True, slots=True)
class Options:
    """Sizes (the issue's: 1,000,000 rows over 30 days; 50,000 rows in 24 hours)."""

    range_rows: int = 1_000_000
    days: int = 30
    other_rows: int = 200_000
    tenant_rows: int = 50_000
    range_calls: int = 100
    seed_calls: int = 10
    tenant_calls: int = 500
    fold_rows: int = 20_000
    fold_rounds: int = 3


def seed_over_range() -> str:
    """The seed's aggregate SQL (verbatim) over [$2, $3) for tenant $1."""
    seed = load_sql("schema/seed_metrics_24h")
    ranged = seed.replace(
        _SEED_WINDOW, "WHERE created_at >= $2 AND created_at < $3 AND tenant_id = $1"
    )
    return (
        sql.SQL(load_sql("bench/seed_range"))
        .format(figures=sql.SQL(", ").join(map(sql.Identifier, _FIGURES)), ranged=sql.SQL(ranged))
        .as_string(None)
    )


async def _tail_rows(
    conn: AnyConnection, tenant: str, rows: int, start: datetime, end: datetime
) -> None:
    span = end - start
    for done in range(0, rows, _CHUNK):
        n = min(_CHUNK, rows - done)
        await conn.execute(
            load_sql("bench/generate_tail_rows"),
            n,
            tenant,
            start + span * (done / rows),
            start + span * ((done + n) / rows),
            timeout=_LONG,
        )


async def _micros(call: Callable[..., Awaitable[object]]) -> int:
    started = time.perf_counter_ns()
    await call()
    return (time.perf_counter_ns() - started) // 1000


async def scenario(url: str, options: Options) -> dict[str, Any]:
    """Load, fold, VACUUM ANALYZE, then time both scenarios in this run."""
    settings = Settings.from_env(metrics_staleness=0.0)
    pool = await create_pool(url, settings=settings, min_size=1, max_size=1)
    ranged, hot, hot_tail = "tenant-range", "tenant-hot", "tenant-hot-tail"
    try:
        async with pool.acquire() as conn:
            now = datetime.now(UTC)
            started = time.perf_counter()
            await _tail_rows(
                conn, ranged, options.range_rows, now - timedelta(days=options.days), now
            )
            await generate_rows(
                conn, options.other_rows, now - timedelta(days=options.days), now, RollupOptions()
            )
            await generate_rows(
                conn,
                options.tenant_rows,
                now - timedelta(hours=23, minutes=59),
                now,
                RollupOptions(),
                tenant=hot,
            )
            await _tail_rows(
                conn, hot_tail, options.tenant_rows, now - timedelta(hours=23, minutes=59), now
            )
            await conn.fetchval(load_sql("bench/fold"), timeout=_LONG)
            await conn.execute(load_sql("bench/vacuum_all"), timeout=_LONG)
            load_s = time.perf_counter() - started
            distinct = await conn.fetchval(load_sql("bench/distinct_times"), ranged)
            rollup_rows = await conn.fetchval(load_sql("bench/count_rollup_tenant"), ranged)
        repo = ValidationRepository(pool, settings)
        seed_query = seed_over_range()
        ours: list[int] = []
        seed: list[int] = []
        equal = True
        # Interleaved, so that both see the same machine; warm both first.
        since = datetime.now(UTC) - timedelta(days=options.days)
        await repo.tenant_metrics(ranged, since)
        await pool.fetchrow(seed_query, ranged, since, datetime.now(UTC), timeout=_LONG)
        per_seed = max(options.range_calls // max(options.seed_calls, 1), 1)
        for i in range(options.range_calls):
            since = datetime.now(UTC) - timedelta(days=options.days)
            ours.append(await _micros(lambda s=since: repo.tenant_metrics(ranged, s)))
            if i % per_seed == 0 and len(seed) < options.seed_calls:
                until = datetime.now(UTC)
                seed.append(
                    await _micros(
                        lambda s=since, u=until: pool.fetchrow(
                            seed_query, ranged, s, u, timeout=_LONG
                        )
                    )
                )
                got = await repo.tenant_metrics(ranged, since, until)
                expected = await pool.fetchrow(seed_query, ranged, since, until, timeout=_LONG)
                equal = equal and got is not None and expected is not None
                if got is not None and expected is not None:
                    equal = equal and tuple(getattr(got, f) for f in _FIGURES) == tuple(expected)
        versions = await _range_versions(pool, repo, ranged, options)
        # The ranged tenant's window: a long tail with ``days`` of history behind it.
        live = await _realtime(
            pool,
            options,
            {"short_tail": hot, "long_tail": hot_tail, "long_tail_with_history": ranged},
        )
        fold = await _fold_cost(pool, options)
    finally:
        await pool.close()
    mine, theirs = Percentiles.of(ours), Percentiles.of(seed)
    assert mine is not None and theirs is not None
    return {
        "range": {
            "tenant_rows": options.range_rows,
            "days": options.days,
            "distinct_processing_times": distinct,
            "rollup_rows": rollup_rows,
            "load_s": round(load_s, 1),
            "tenant_metrics_range_ms": mine.to_json(),
            "seed_sql_same_range_ms": theirs.to_json(),
            "ratio_p50": round(theirs.p50 / mine.p50, 2),
            "ratio_p99": round(theirs.p99 / mine.p99, 2),
            "equal_to_seed_sql": equal,
            **versions,
        },
        "24h": live,
        "fold": fold,
    }


Call = Callable[[], Awaitable[object]]


async def _swapped(
    pool: Pool, versions: tuple[str, str], calls: dict[str, Call], per_round: int
) -> dict[tuple[str, str], list[int]]:
    """Microseconds of each call, ``per_round`` times (after one warm call) under each version of
    a function swapped in from sql/schema alternately, two rounds each, so that both see the
    same machine; the first version stays in place."""
    samples: dict[tuple[str, str], list[int]] = {(n, v): [] for n in calls for v in versions}
    for _ in range(2):
        for version in versions:
            await pool.execute(load_sql(f"schema/{version}"))
            for name, call in calls.items():
                await call()
                for _ in range(per_round):
                    samples[(name, version)].append(await _micros(call))
    await pool.execute(load_sql(f"schema/{versions[0]}"))
    return samples


def _percentiles(samples: list[int]) -> Percentiles:
    found = Percentiles.of(samples)
    assert found is not None
    return found


async def _range_versions(
    pool: Pool, repo: ValidationRepository, tenant: str, options: Options
) -> dict[str, Any]:
    """p50/p99 of the ranged figures with tenant_metrics_range() v4 (migration 0018) and v3
    swapped in alternately, two rounds each; v4 stays in place."""

    def ranged() -> Awaitable[object]:
        return repo.tenant_metrics(tenant, datetime.now(UTC) - timedelta(days=options.days))

    samples = await _swapped(pool, _RANGES, {"range": ranged}, max(options.range_calls // 2, 1))
    now_p = _percentiles(samples[("range", _RANGES[0])])
    before_p = _percentiles(samples[("range", _RANGES[1])])
    return {
        f"{_RANGES[0]}_ms": now_p.to_json(),
        f"{_RANGES[1]}_ms": before_p.to_json(),
        "v3_over_v4_p50": round(before_p.p50 / now_p.p50, 2),
        "v3_over_v4_p99": round(before_p.p99 / now_p.p99, 2),
    }


async def _realtime(pool: Pool, options: Options, tenants: dict[str, str]) -> dict[str, Any]:
    """p50/p99 of the real-time 24-hour statement per tenant, with tenant_metrics_24h() v6
    (migration 0018) and v5 (before it) swapped in alternately, two rounds each."""
    query = load_sql("queries/metrics_realtime")

    def realtime(who: str) -> Call:
        return lambda: pool.fetchrow(query, who)

    calls = {name: realtime(who) for name, who in tenants.items()}
    samples = await _swapped(pool, _REALTIME, calls, options.tenant_calls // 2)
    out: dict[str, Any] = {}
    for name, who in tenants.items():
        figures: dict[str, Any] = {
            "tenant_rows_24h": await pool.fetchval(load_sql("bench/tenant_total_24h"), who),
            "distinct_processing_times_24h": await pool.fetchval(
                load_sql("bench/distinct_times_24h"), who
            ),
        }
        for version in _REALTIME:
            figures[f"{version}_ms"] = _percentiles(samples[(name, version)]).to_json()
        out[name] = figures
    return out


async def _fold_cost(pool: Pool, options: Options) -> dict[str, Any]:
    """Seconds to fold ``fold_rows`` new rows with the current fold and with the previous one,
    alternately; the previous one stays in place afterwards (this is the last step)."""
    now_v, before_v = _FOLDS
    times: dict[str, list[float]] = {now_v: [], before_v: []}
    async with pool.acquire() as conn:
        for _ in range(options.fold_rounds):
            for version in times:
                await conn.execute(load_sql(f"schema/{version}"))
                now = datetime.now(UTC)
                for done in range(0, options.fold_rows, 1000):
                    await generate_rows(
                        conn,
                        min(1000, options.fold_rows - done),
                        now - timedelta(minutes=59),
                        now,
                        RollupOptions(),
                    )
                started = time.perf_counter()
                await conn.fetchval(load_sql("bench/fold"), timeout=_LONG)
                times[version].append(time.perf_counter() - started)
    current, before = statistics.median(times[now_v]), statistics.median(times[before_v])
    return {
        "rows_per_fold": options.fold_rows,
        "versions": f"{now_v} vs {before_v}",
        "fold_now_s": round(current, 4),
        "fold_before_s": round(before, 4),
        "ratio": round(current / before, 2),
        "rounds_now_s": [round(x, 4) for x in times[now_v]],
        "rounds_before_s": [round(x, 4) for x in times[before_v]],
    }


def run(url: str, options: Options) -> dict[str, Any]:
    """Both scenarios in one scratch database beside ``url``'s."""
    with scratch_database(url) as scratch:
        return asyncio.run(scenario(scratch, options))
