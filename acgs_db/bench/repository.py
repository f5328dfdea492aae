"""``acgs-db bench repository``: the repository against raw baselines measured in the same run.

Everything runs in a scratch database (:mod:`acgs_db.bench.scratch`) on the configured server:

* **COPY**: ``bulk_insert`` of N realistic records (checks and JSON encoding included) against a
  raw asyncpg ``copy_records_to_table`` of the same, already encoded tuples into the same table,
  alternated over several rounds on an emptied table after a CHECKPOINT (medians reported);
  SQLAlchemy Core ``executemany`` on a smaller sample; ``bulk_insert(connections=2)``.
* **Memory**: a child process streams a generator of N records through ``bulk_insert`` and
  reports its peak RSS.
* **history()**: p50/p99 over single-connection calls, against raw asyncpg ``fetch`` of the same
  prepared SQL; then QPS with 8 concurrent callers against raw ``fetch`` with 8 callers (with
  asyncpg's default JSON decoding, and again with the repository's codecs); and
  pgbench's TPS of the history script as the server's ceiling; and the cost of row-level
  security (a tenant-scoped login) on the same calls.
* **tenant_metrics()** from the view: p50/p99 on one connection.
* **Replicas** (``--replicas``): history() QPS on the primary alone against the primary plus one
  streaming standby, and the cost of the routing itself (see :func:`bench_replicas`).
"""

from __future__ import annotations

import asyncio
import json
import random
import resource
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import psycopg
from psycopg import sql
from sqlalchemy import MetaData as SaMetaData
from sqlalchemy import Table, create_engine, insert, text
from sqlalchemy.pool import NullPool

from acgs_db import tenants
from acgs_db.bench.partition_baseline import PLACEHOLDER
from acgs_db.bench.pgbench import Percentiles, RunOptions, ScriptName
from acgs_db.bench.pgbench import run as run_pgbench
from acgs_db.bench.scratch import scratch_database, url_as, url_for
from acgs_db.constants import CONSTITUTIONAL_HASH, VALIDATIONS_TABLE
from acgs_db.errors import AcgsDbError, ConfigurationError
from acgs_db.metrics import Metrics
from acgs_db.pool import AnyConnection, PoolOptions, create_pool, init_connection
from acgs_db.records import COPY_COLUMNS, Limits, ValidationRecord, copy_row
from acgs_db.refresher import MetricsRefresher
from acgs_db.repository import ValidationRepository
from acgs_db.resources import load_sql
from acgs_db.settings import Settings
from acgs_db.tooling.schema import sqlalchemy_url
from acgs_db.tooling.synthetic import Workload, generate

_LONG = 3600.0  # seconds: statements of a benchmark may run long


@dataclass(frozen=True, slots=True)
class Options:
    """Sizes of the benchmark."""

    rows: int = 1_000_000
    rounds: int = 3
    executemany_rows: int = 100_000
    memory_rows: int = 5_000_000
    calls: int = 20_000
    concurrency: int = 8
    seconds: float = 10.0
    pgbench_seconds: int = 20
    tenants: int = 100
    decisions: int = 1000


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def _records(options: Options, rows: int, seed: int = 1) -> list[ValidationRecord]:
    workload = Workload(
        rows=rows, tenants=options.tenants, days=2, decisions=options.decisions, seed=seed
    )
    return list(generate(workload))


def _raw_tuples(records: Sequence[ValidationRecord], limits: Limits) -> list[tuple[Any, ...]]:
    """The rows bulk_insert would send, encoded the way a raw asyncpg connection takes them."""
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    rows = []
    for record in records:
        row = list(copy_row(record, limits, now))
        row[4] = None if row[4] is None else row[4][1:].decode()  # jsonb as text for asyncpg
        rows.append(tuple(row))
    return rows


async def _reset(conn: AnyConnection) -> None:
    await conn.execute(load_sql("bench/empty_tables"), timeout=_LONG)
    await conn.execute(load_sql("bench/checkpoint"), timeout=_LONG)


async def bench_copy(url: str, options: Options, settings: Settings) -> dict[str, Any]:
    """Rows/s of bulk_insert against raw COPY, executemany and two connections."""
    limits = Limits(
        settings.max_details_bytes, settings.max_processing_time_ms, settings.max_clock_skew
    )
    records = _records(options, options.rows)
    raw_rows = _raw_tuples(records, limits)
    raw_conn = await asyncpg.connect(url)
    pool = await create_pool(url, settings=settings, min_size=2, max_size=4)
    repo = ValidationRepository(pool, settings)
    raw_rates, repo_rates = [], []
    try:
        for _ in range(options.rounds):
            await _reset(raw_conn)
            started = time.perf_counter()
            await raw_conn.copy_records_to_table(
                VALIDATIONS_TABLE, records=raw_rows, columns=COPY_COLUMNS, timeout=_LONG
            )
            raw_rates.append(len(raw_rows) / (time.perf_counter() - started))
            await _reset(raw_conn)
            started = time.perf_counter()
            await repo.bulk_insert(records)
            repo_rates.append(len(records) / (time.perf_counter() - started))
        await _reset(raw_conn)
        started = time.perf_counter()
        await repo.bulk_insert(records, connections=2)
        parallel = len(records) / (time.perf_counter() - started)
        await _reset(raw_conn)
    finally:
        await raw_conn.close()
        await pool.close()
    executemany = _executemany(url, raw_rows[: options.executemany_rows])
    raw, repo_rate = _median(raw_rates), _median(repo_rates)
    return {
        "rows": len(records),
        "raw_copy_rows_s": round(raw),
        "bulk_insert_rows_s": round(repo_rate),
        "ratio_to_raw_copy": round(repo_rate / raw, 3),
        "raw_copy_rounds": [round(r) for r in raw_rates],
        "bulk_insert_rounds": [round(r) for r in repo_rates],
        "sqlalchemy_executemany_rows": options.executemany_rows,
        "sqlalchemy_executemany_rows_s": round(executemany),
        "ratio_to_executemany": round(repo_rate / executemany, 2),
        "bulk_insert_2_connections_rows_s": round(parallel),
        "ratio_2_connections_to_raw_copy": round(parallel / raw, 3),
    }


def _executemany(url: str, rows: Sequence[tuple[Any, ...]]) -> float:
    """SQLAlchemy Core: one INSERT executed for many parameter sets (psycopg 3)."""
    engine = create_engine(sqlalchemy_url(url), poolclass=NullPool)
    try:
        table = Table(VALIDATIONS_TABLE, SaMetaData(), autoload_with=engine)
        params = [dict(zip(COPY_COLUMNS, row, strict=True)) for row in rows]
        for param in params:
            if param["validation_details"] is not None:
                param["validation_details"] = json.loads(param["validation_details"])
        with engine.begin() as conn:  # validations are append-only (migration 0010)
            conn.execute(text(load_sql("bench/empty_tables")))
        started = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(insert(table), params)
        return len(params) / (time.perf_counter() - started)
    finally:
        engine.dispose()


# -- memory ---------------------------------------------------------------------------------


async def _stream_rows(url: str, rows: int) -> dict[str, Any]:
    settings = Settings.from_env()
    pool = await create_pool(url, settings=settings, min_size=1, max_size=1)
    try:
        started = time.perf_counter()
        written = await ValidationRepository(pool, settings).bulk_insert(
            generate(Workload(rows=rows, days=2))
        )
        seconds = time.perf_counter() - started
    finally:
        await pool.close()
    return {
        "rows": written,
        "seconds": round(seconds, 1),
        "peak_rss_mb": round(_peak_rss_kb() / 1024),
    }


def _peak_rss_kb() -> int:
    """This process's peak resident set (VmHWM). Not ru_maxrss: on Linux that survives exec,
    so a child forked from a big parent would report the parent's size."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def bench_memory(url: str, rows: int) -> dict[str, Any]:
    """Peak RSS of a fresh process streaming ``rows`` generated records through bulk_insert."""
    out = subprocess.run(
        [sys.executable, "-m", "acgs_db.bench.repository", "memory", url, str(rows)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, Any] = json.loads(out)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(load_sql("bench/empty_tables"))
    return result


# -- reads ----------------------------------------------------------------------------------


async def _latencies(call: Callable[[], Awaitable[object]], calls: int) -> Percentiles:
    micros = []
    for _ in range(calls):
        started = time.perf_counter_ns()
        await call()
        micros.append((time.perf_counter_ns() - started) // 1000)
    result = Percentiles.of(micros)
    assert result is not None
    return result


async def _qps(calls: Sequence[Callable[[], Awaitable[object]]], seconds: float) -> float:
    """Calls per second of concurrent workers, one per callable, for ``seconds``."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker(call: Callable[[], Awaitable[object]]) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await call()
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(call) for call in calls))
    return done / (time.perf_counter() - started)


def _raw_fetch(
    conn: asyncpg.Connection, query: str, pick: Callable[[], tuple[str, str]]
) -> Callable[[], Awaitable[Any]]:
    """One raw ``fetch`` of ``query`` for a random sampled pair per call."""

    async def call() -> Any:
        tenant, decision = pick()
        return await conn.fetch(query, tenant, decision, CONSTITUTIONAL_HASH, 10)

    return call


async def _data_partition(conn: asyncpg.Connection) -> tuple[str, float]:
    """The server-quoted name of the partition holding the most rows, and its share of them."""
    row = await conn.fetchrow(load_sql("bench/data_partition"))
    if row is None:
        raise AcgsDbError("constitutional_validations has no partitions")
    return str(row[0]), float(row[1] or 0.0)


async def bench_reads(url: str, options: Options, settings: Settings) -> dict[str, Any]:
    """history() and tenant_metrics() against raw asyncpg, and the cost of RLS."""
    pool = await create_pool(
        url, settings=settings, min_size=options.concurrency, max_size=options.concurrency
    )
    try:
        repo = ValidationRepository(pool, settings)
        await repo.bulk_insert(generate(Workload(rows=options.rows, days=30)))
        await pool.execute(load_sql("bench/vacuum_analyze"), timeout=_LONG)
        await MetricsRefresher(pool, settings=settings).refresh_once()
        pairs = [tuple(r) for r in await pool.fetch(load_sql("bench/sample_pairs"), 2000)]
        rng = random.Random(7)
        history_sql = load_sql("queries/history")

        def pick() -> tuple[str, str]:
            return pairs[rng.randrange(len(pairs))]

        async def repo_history() -> object:
            tenant, decision = pick()
            return await repo.history(tenant, decision)

        def raw_history(conn: AnyConnection) -> Callable[[], Awaitable[object]]:
            async def call() -> object:
                tenant, decision = pick()
                return await conn.fetch(history_sql, tenant, decision, CONSTITUTIONAL_HASH, 10)

            return call

        # One connection: the repository on a pool of one, raw fetch on a plain connection.
        one_pool = await create_pool(url, settings=settings, min_size=1, max_size=1)
        one = await asyncpg.connect(url)
        try:
            single = ValidationRepository(one_pool, settings)

            async def single_history() -> object:
                tenant, decision = pick()
                return await single.history(tenant, decision)

            async def single_raw() -> object:
                tenant, decision = pick()
                return await one.fetch(history_sql, tenant, decision, CONSTITUTIONAL_HASH, 10)

            async def single_metrics() -> object:
                return await single.tenant_metrics(pick()[0])

            await _latencies(single_history, 500)  # warm caches and prepared statements
            await _latencies(single_raw, 500)
            history_single = await _latencies(single_history, options.calls)
            raw_single = await _latencies(single_raw, options.calls)
            metrics_single = await _latencies(single_metrics, max(options.calls // 4, 1000))
        finally:
            await one.close()
            await one_pool.close()

        # Concurrent callers: raw fetch on as many plain connections, the repository on its pool.
        raws = [await asyncpg.connect(url) for _ in range(options.concurrency)]
        try:
            raw_calls = [raw_history(conn) for conn in raws]
            await _qps(raw_calls, 1.0)
            await _qps([repo_history] * options.concurrency, 1.0)
            raw_qps = await _qps(raw_calls, options.seconds)
            repo_qps = await _qps([repo_history] * options.concurrency, options.seconds)
            # The same raw connections with the repository's JSON codecs: what is left of the
            # gap is the pool and the repository's own work, not decoding.
            for conn in raws:
                await init_connection(conn)
            raw_codecs_qps = await _qps(raw_calls, options.seconds)
            # The same look-up run directly on the partition holding the most rows (issue 13:
            # history() against raw asyncpg on that one partition), same codecs.
            partition = await _data_partition(raws[0])
            one_sql = load_sql("bench/history_one_partition").replace(PLACEHOLDER, partition[0])
            partition_calls = [_raw_fetch(conn, one_sql, pick) for conn in raws]
            await _qps(partition_calls, 1.0)
            partition_qps = await _qps(partition_calls, options.seconds)
            repo_again_qps = await _qps([repo_history] * options.concurrency, options.seconds)
        finally:
            for conn in raws:
                await conn.close()
        rls = await _rls_cost(url, settings, pairs, options.calls // 2)
    finally:
        await pool.close()
    pgbench = run_pgbench(
        url,
        RunOptions(
            script=ScriptName.HISTORY,
            clients=options.concurrency,
            threads=2,
            duration=options.pgbench_seconds,
        ),
        settings=settings,
    )
    return {
        "rows": options.rows,
        "history_single_connection_ms": history_single.to_json(),
        "raw_fetch_single_connection_ms": raw_single.to_json(),
        "history_qps_concurrent": round(repo_qps),
        "raw_fetch_qps_concurrent": round(raw_qps),
        "concurrency": options.concurrency,
        "ratio_to_raw_fetch": round(repo_qps / raw_qps, 3),
        "raw_fetch_same_codecs_qps_concurrent": round(raw_codecs_qps),
        "ratio_to_raw_fetch_same_codecs": round(repo_qps / raw_codecs_qps, 3),
        "one_partition": partition[0],
        "one_partition_share_of_rows": round(partition[1], 4),
        "raw_fetch_one_partition_qps_concurrent": round(partition_qps),
        "history_qps_concurrent_again": round(repo_again_qps),
        "ratio_to_raw_fetch_one_partition": round(repo_again_qps / partition_qps, 3),
        "pgbench_history_tps": round(pgbench.tps),
        "pgbench_history_latency_ms": pgbench.latency_ms.to_json() if pgbench.latency_ms else None,
        "tenant_metrics_view_single_connection_ms": metrics_single.to_json(),
        "rls": rls,
    }


async def _rls_cost(
    url: str, settings: Settings, pairs: Sequence[tuple[Any, ...]], calls: int
) -> dict[str, Any]:
    """history() of one tenant as a login bound to it (row-level security through
    acgs_session_tenant()) against the same calls as a role without row-level security, each on
    one connection."""
    login = f"acgs_bench_tenant_{uuid.uuid4().hex[:8]}"
    password = secrets.token_urlsafe(24)  # servers ask for one (the embedded cluster: SCRAM)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            sql.SQL(load_sql("bench/login_create")).format(
                login=sql.Identifier(login), password=sql.Literal(password)
            )
        )
    tenant = pairs[0][0]
    pairs = [pair for pair in pairs if pair[0] == tenant]
    tenants.grant(url, login, tenant, settings)
    scoped_url = url_as(url, login, password)
    try:
        plain_pool = await create_pool(url, settings=settings, min_size=1, max_size=1)
        scoped_pool = await create_pool(scoped_url, settings=settings, min_size=1, max_size=1)
        try:
            plain = ValidationRepository(plain_pool, settings)
            scoped = ValidationRepository(scoped_pool, settings, tenant_scoped=True)
            rng = random.Random(11)

            async def plain_call() -> object:
                tenant, decision = pairs[rng.randrange(len(pairs))]
                return await plain.history(tenant, decision)

            async def scoped_call() -> object:
                tenant, decision = pairs[rng.randrange(len(pairs))]
                return await scoped.history(tenant, decision)

            await _latencies(plain_call, 300)
            await _latencies(scoped_call, 300)
            without = await _latencies(plain_call, calls)
            with_rls = await _latencies(scoped_call, calls)
        finally:
            await plain_pool.close()
            await scoped_pool.close()
    finally:
        tenants.revoke(url, login, settings)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL(load_sql("bench/login_drop")).format(login=sql.Identifier(login)))
    return {
        "history_ms_without_rls": without.to_json(),
        "history_ms_tenant_scoped": with_rls.to_json(),
        "p50_ratio": round(with_rls.p50 / without.p50, 2),
    }


# -- replicas -------------------------------------------------------------------------------


async def bench_replicas(
    url: str, standby_url: str, options: Options, settings: Settings
) -> dict[str, Any]:
    """history() QPS of ``options.concurrency`` callers on the primary alone against the
    primary plus one standby (reads routed there), in 1 s slices taking turns (medians);
    the routing's own cost: the router's decision per call against a history() look-up, and
    history() through the router against a pool on the same standby without one."""
    sizes: PoolOptions = {"min_size": options.concurrency, "max_size": options.concurrency}
    loader = await create_pool(url, replicas=[], settings=settings, min_size=1, max_size=2)
    try:
        await ValidationRepository(loader, settings).bulk_insert(
            generate(Workload(rows=options.rows, days=30))
        )
        await loader.execute(load_sql("bench/vacuum_analyze"), timeout=_LONG)
        pairs = [tuple(r) for r in await loader.fetch(load_sql("bench/sample_pairs"), 2000)]
    finally:
        await loader.close()
    primary_pool = await create_pool(url, replicas=[], settings=settings, **sizes)
    routed_pool = await create_pool(url, replicas=[standby_url], settings=settings, **sizes)
    direct_pool = await create_pool(standby_url, replicas=[], settings=settings, **sizes)
    try:
        router = routed_pool.replicas
        assert router is not None
        if not await router.wait_ready(120.0):
            raise RuntimeError("the standby did not catch up with the primary within 120 s")
        rng = random.Random(13)
        try:  # where the reads went, when the Prometheus extra is installed
            metrics: Metrics | None = Metrics()
        except ConfigurationError:
            metrics = None
        repos = {
            "primary_only": ValidationRepository(primary_pool, settings),
            "primary_plus_standby": ValidationRepository(routed_pool, settings, metrics=metrics),
            # Its own collectors too, so that both sides time their statements alike.
            "standby_without_router": ValidationRepository(
                direct_pool, settings, metrics=None if metrics is None else Metrics()
            ),
        }

        def caller(repo: ValidationRepository) -> Callable[[], Awaitable[Any]]:
            async def call() -> Any:
                tenant, decision = pairs[rng.randrange(len(pairs))]
                return await repo.history(tenant, decision)

            return call

        qps: dict[str, list[float]] = {name: [] for name in repos}
        for repo in repos.values():
            await _qps([caller(repo)] * options.concurrency, 1.0)  # warm up
        # Slices of one second, the three sides taking turns (the order turning each time), so
        # that the machine's load drifts over all three alike.
        names = list(repos)
        slices = max(1, round(options.seconds)) * options.rounds
        for turn in range(slices):
            for name in names[turn % 3 :] + names[: turn % 3]:
                qps[name].append(await _qps([caller(repos[name])] * options.concurrency, 1.0))
        # One caller, calls through the router and on the standby's own pool taking turns (the
        # same look-up each pair), so that the machine's load drifts equally over both.
        routed_call = repos["primary_plus_standby"].history
        direct_call = repos["standby_without_router"].history
        # Also this process's CPU time per call: the client's own work, which the routing adds
        # to (the server's is the same), and which other processes' load hardly disturbs.
        routed_us: list[int] = []
        direct_us: list[int] = []
        cpu_ns = {"routed": 0, "direct": 0}
        for i in range(options.calls):
            tenant, decision = pairs[rng.randrange(len(pairs))]
            order = (("routed", routed_call, routed_us), ("direct", direct_call, direct_us))
            for side, call, sink in order if i % 2 else order[::-1]:
                cpu = time.process_time_ns()
                started = time.perf_counter_ns()
                await call(tenant, decision)
                sink.append((time.perf_counter_ns() - started) // 1000)
                cpu_ns[side] += time.process_time_ns() - cpu
        routed = Percentiles.of(routed_us)
        direct_lookup = Percentiles.of(direct_us)
        assert routed is not None and direct_lookup is not None
        # The decision alone: the clock read and comparisons every routed read makes.
        # In CPU time: on a loaded machine wall time mostly counts waiting for a core.
        decisions = 200_000
        started = time.process_time_ns()
        for _ in range(decisions):
            router.eligible()
        decision_us = (time.process_time_ns() - started) / decisions / 1000
        standby_reads = primary_reads = None
        if metrics is not None:
            standby_reads = metrics.registry.get_sample_value(
                "acgs_db_replica_reads_total", {"target": router.standbys[0].name}
            )
            primary_reads = metrics.registry.get_sample_value(
                "acgs_db_replica_reads_total", {"target": "primary"}
            )
    finally:
        await direct_pool.close()
        await routed_pool.close()
        await primary_pool.close()
    alone = _median(qps["primary_only"])
    both = _median(qps["primary_plus_standby"])
    direct = _median(qps["standby_without_router"])
    routed_p50, direct_p50 = routed.p50, direct_lookup.p50
    return {
        "rows": options.rows,
        "concurrency": options.concurrency,
        "history_qps_primary_only": round(alone),
        "history_qps_primary_plus_standby": round(both),
        "ratio_standby_to_primary_only": round(both / alone, 3),
        "history_qps_standby_pool_without_router": round(direct),
        "ratio_routed_to_standby_without_router": round(both / direct, 3),
        "qps_slices_of_1s": len(qps["primary_only"]),
        "qps_slice_min_max": {name: [round(min(v)), round(max(v))] for name, v in qps.items()},
        "reads_on_standby": standby_reads,
        "reads_on_primary": primary_reads,
        "history_one_caller_ms_routed": routed.to_json(),
        "history_one_caller_ms_standby_without_router": direct_lookup.to_json(),
        "routing_decision_us": round(decision_us, 3),
        "routed_p50_to_direct_p50": round(routed_p50 / direct_p50, 3),
        "routed_min_to_direct_min": round(routed.min / direct_lookup.min, 3),
        "client_cpu_us_per_call_routed": round(cpu_ns["routed"] / options.calls / 1000, 1),
        "client_cpu_us_per_call_direct": round(cpu_ns["direct"] / options.calls / 1000, 1),
        "routing_client_cpu_us_per_call": round(
            (cpu_ns["routed"] - cpu_ns["direct"]) / options.calls / 1000, 1
        ),
        # Shares of the fastest look-up (the least disturbed by the load; the p50 swells with
        # it) and of the client's CPU per look-up: the stricter yardsticks.
        "routing_decision_share_of_fastest_lookup": round(
            decision_us / (direct_lookup.min * 1000), 4
        ),
        "routing_client_cpu_share_of_fastest_lookup": round(
            (cpu_ns["routed"] - cpu_ns["direct"]) / options.calls / 1e6 / direct_lookup.min, 4
        ),
        "routing_client_cpu_share_of_client_cpu": round(
            (cpu_ns["routed"] - cpu_ns["direct"]) / cpu_ns["direct"], 4
        ),
    }


def run(
    url: str,
    options: Options,
    settings: Settings | None = None,
    *,
    standby_url: str | None = None,
    only_replicas: bool = False,
) -> dict[str, Any]:
    """All of the above in one scratch database; returns the figures. With ``standby_url`` (a
    standby of ``url``'s server; its database part is replaced by the scratch database's), also
    the replica figures; ``only_replicas`` runs those alone."""
    settings = settings or Settings.from_env()
    with scratch_database(url) as scratch:
        results: dict[str, Any] = {"options": asdict(options)}
        if not only_replicas:
            results["copy"] = asyncio.run(bench_copy(scratch, options, settings))
            results["memory"] = bench_memory(scratch, options.memory_rows)
            results["reads"] = asyncio.run(bench_reads(scratch, options, settings))
        if standby_url is not None:
            database = urlsplit(scratch).path.lstrip("/")
            results["replicas"] = asyncio.run(
                bench_replicas(scratch, url_for(standby_url, database), options, settings)
            )
    return results


if __name__ == "__main__":  # the child process of bench_memory
    if len(sys.argv) == 4 and sys.argv[1] == "memory":
        print(json.dumps(asyncio.run(_stream_rows(sys.argv[2], int(sys.argv[3])))))
