"""``acgs-db bench writer``: the audit writer against ``insert()`` and ``bulk_insert()``, same run.

In a scratch database (:mod:`acgs_db.bench.scratch`), the same realistic records (``created_at``
None: a service records "now") are written three ways, each on emptied tables after a
CHECKPOINT, and every way's stored rows are counted against the records sent:

* ``insert()`` from N concurrent producers (a pool of N connections), one commit per record;
* ``audit_writer().write()`` from the same N producers, once per connection count (and linger)
  asked for;
* one ``bulk_insert()`` of all the records (the ceiling: one COPY, one commit).

Closed loop (default): each producer waits for its acknowledgement before its next record.
Fixed rate (``rate``): records are due on a global schedule of ``rate`` per second, taken by the
N producers; a record's latency runs from when it was due (as pgbench ``-R`` counts it), so a
writer that falls behind pays for it.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import asyncpg

from acgs_db.bench.pgbench import Percentiles
from acgs_db.bench.scratch import scratch_database
from acgs_db.pool import AnyConnection, create_pool
from acgs_db.records import ValidationRecord
from acgs_db.repository import ValidationRepository
from acgs_db.resources import load_sql
from acgs_db.settings import Settings
from acgs_db.tooling.synthetic import Workload, generate

_LONG = 3600.0


@dataclass(frozen=True, slots=True)
class Options:
    """Sizes of the benchmark."""

    producers: int = 64
    records: int = 200_000
    rate: float | None = None
    """Records per second on a fixed schedule; None: closed loop."""
    duration: float = 30.0
    """With ``rate``: seconds of each run (records = min(records, rate x duration))."""
    connections: tuple[int, ...] = (1,)
    max_delays: tuple[float, ...] = (0.0,)
    tenants: int = 100
    decisions: int = 1000


@dataclass
class _Run:
    seconds: float
    micros: list[int]


async def _drive(
    call: Callable[[ValidationRecord], Awaitable[object]],
    records: Sequence[ValidationRecord],
    producers: int,
    rate: float | None,
) -> _Run:
    """Write every record through ``call`` from ``producers`` concurrent tasks."""
    counter = itertools.count()
    micros: list[int] = []
    started = time.perf_counter()

    async def producer() -> None:
        while (i := next(counter)) < len(records):
            if rate is None:
                due = time.perf_counter()
            else:
                due = started + i / rate
                wait = due - time.perf_counter()
                if wait > 0:
                    await asyncio.sleep(wait)
            await call(records[i])
            micros.append(int((time.perf_counter() - due) * 1_000_000))

    await asyncio.gather(*(producer() for _ in range(producers)))
    return _Run(time.perf_counter() - started, micros)


def _figures(run: _Run, rows: int) -> dict[str, Any]:
    latency = Percentiles.of(run.micros)
    assert latency is not None
    return {
        "validations_s": round(rows / run.seconds),
        "seconds": round(run.seconds, 2),
        "latency_ms": latency.to_json(),
    }


async def _reset(conn: AnyConnection) -> None:
    await conn.execute(load_sql("bench/empty_tables"), timeout=_LONG)
    await conn.execute(load_sql("bench/checkpoint"), timeout=_LONG)


async def _stored(conn: AnyConnection) -> int:
    return int(await conn.fetchval(load_sql("bench/count_validations")))


async def _bench(url: str, options: Options, settings: Settings) -> dict[str, Any]:
    rows = options.records
    if options.rate is not None:
        rows = min(rows, max(int(options.rate * options.duration), 1))
    workload = Workload(
        rows=rows, tenants=options.tenants, days=1, decisions=options.decisions, seed=16
    )
    records = [record._replace(created_at=None) for record in generate(workload)]
    admin = await asyncpg.connect(url)
    results: dict[str, Any] = {"options": asdict(options), "records": rows}
    try:
        # insert(): a connection per producer, as a service with a large enough pool.
        pool = await create_pool(
            url, settings=settings, min_size=options.producers, max_size=options.producers
        )
        try:
            repo = ValidationRepository(pool, settings)
            await _reset(admin)
            run = await _drive(repo.insert, records, options.producers, options.rate)
            results["insert"] = _figures(run, rows)
            results["insert"]["stored"] = await _stored(admin)
        finally:
            await pool.close()

        writers = []
        for connections, max_delay in itertools.product(options.connections, options.max_delays):
            pool = await create_pool(
                url, settings=settings, min_size=connections, max_size=connections
            )
            try:
                repo = ValidationRepository(pool, settings)
                await _reset(admin)
                async with repo.audit_writer(
                    connections=connections, max_delay=max_delay
                ) as writer:
                    run = await _drive(writer.write, records, options.producers, options.rate)
                    status = writer.status
                figures = _figures(run, rows)
                figures.update(
                    connections=connections,
                    max_delay_ms=max_delay * 1000,
                    batches=status.batches,
                    mean_batch=round(status.written / max(status.batches, 1), 1),
                    stored=await _stored(admin),
                    ratio_to_insert=round(
                        figures["validations_s"] / results["insert"]["validations_s"], 2
                    ),
                )
                writers.append(figures)
            finally:
                await pool.close()
        results["writer"] = writers

        pool = await create_pool(url, settings=settings, min_size=1, max_size=1)
        try:
            await _reset(admin)
            started = time.perf_counter()
            await ValidationRepository(pool, settings).bulk_insert(records)
            seconds = time.perf_counter() - started
            results["bulk_insert"] = {
                "validations_s": round(rows / seconds),
                "seconds": round(seconds, 2),
                "stored": await _stored(admin),
            }
        finally:
            await pool.close()
        await _reset(admin)
    finally:
        await admin.close()
    return results


def run(url: str, options: Options, settings: Settings | None = None) -> dict[str, Any]:
    """The three ways of writing in one scratch database; returns the figures."""
    settings = settings or Settings.from_env()
    with scratch_database(url) as scratch:
        return asyncio.run(_bench(scratch, options, settings))
