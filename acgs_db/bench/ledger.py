"""``acgs-db bench ledger``: what the tamper-evident ledger (migration 0010) costs.

In a scratch database (:mod:`acgs_db.bench.scratch`) on the configured server, in the same run:

* ``bulk_insert`` (binary COPY) of the same realistic records with the ledger's capture trigger
  and with it disabled (the baseline), alternating, median of the rounds; and the same records
  again as ``chunks`` COPYs per round, the ledger on and off chunk by chunk (drift on a shared
  machine then hits both sides alike, as the single inserts below are measured);
* ``insert()`` one row per call, in alternating blocks of 50 calls with and without;
* the audit writer (``repository.audit_writer()``, group commit) fed by ``producers``
  concurrent producers, ``writer_records`` records with and without the ledger per round,
  alternating, median of the rounds;
* ``ledger.verify`` of the loaded rows (rows/s) against a sequential scan of the same rows and
  columns streamed to the client by a server-side cursor (the floor any verifier pays);
* the drop event triggers (``ledger_drop_start()``/``ledger_drop_end()``), which fire on every
  ``DROP TABLE`` and so on every ``REFRESH ... CONCURRENTLY`` (it drops a temporary table):
  the refresh of the 24-hour view over the loaded rows, and a lone ``DROP TABLE`` of a
  temporary table, with the event triggers enabled and disabled, alternating (medians).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import psycopg

from acgs_db import ledger
from acgs_db.bench.scratch import scratch_database
from acgs_db.pool import AnyConnection, create_pool
from acgs_db.records import ValidationRecord
from acgs_db.repository import ValidationRepository
from acgs_db.resources import load_sql
from acgs_db.settings import Settings
from acgs_db.tooling.synthetic import Workload, generate

_LONG = 3600.0
_BLOCK = 50
_DROPS = 50  # lone DROP TABLEs timed per round and side


@dataclass(frozen=True, slots=True)
class Options:
    rows: int = 200_000
    rounds: int = 3
    inserts: int = 2_000
    tenants: int = 100
    decisions: int = 1000
    chunks: int = 10
    writer_records: int = 10_000
    producers: int = 32


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


async def _reset(conn: AnyConnection) -> None:
    await conn.execute(load_sql("bench/empty_tables"), timeout=_LONG)
    await conn.execute(load_sql("bench/checkpoint"), timeout=_LONG)


async def _write_rates(url: str, options: Options, settings: Settings) -> dict[str, Any]:
    records = list(
        generate(
            Workload(
                rows=options.rows,
                tenants=options.tenants,
                days=2,
                decisions=options.decisions,
                seed=1,
            )
        )
    )
    singles = records[: options.inserts]
    admin = await asyncpg.connect(url)
    pool = await create_pool(url, settings=settings, min_size=1, max_size=2)
    repo = ValidationRepository(pool, settings)
    keys = ("copy_on", "copy_off", "ins_on", "ins_off", "chunk_on", "chunk_off", "aw_on", "aw_off")
    rates: dict[str, list[float]] = {k: [] for k in keys}
    capture = {
        True: load_sql("bench/ledger_capture_on"),
        False: load_sql("bench/ledger_capture_off"),
    }

    async def copy(ledger_on: bool) -> float:
        await _reset(admin)
        if not ledger_on:
            await admin.execute(load_sql("bench/ledger_capture_off"))
        try:
            started = time.perf_counter()
            await repo.bulk_insert(records)
            return len(records) / (time.perf_counter() - started)
        finally:
            await admin.execute(load_sql("bench/ledger_capture_on"))

    async def chunked(n: int) -> tuple[float, float]:
        """The records as ``chunks`` COPYs, the ledger on and off in turn, chunk by chunk."""
        spent = {True: 0.0, False: 0.0}
        done = {True: 0, False: 0}
        size = max(len(records) // max(options.chunks, 1), 1)
        await _reset(admin)
        try:
            for c, start in enumerate(range(0, len(records), size)):
                chunk = records[start : start + size]
                for on in (True, False) if (c + n) % 2 == 0 else (False, True):
                    await admin.execute(capture[on])
                    started = time.perf_counter()
                    await repo.bulk_insert(chunk)
                    spent[on] += time.perf_counter() - started
                    done[on] += len(chunk)
        finally:
            await admin.execute(capture[True])
        return done[True] / spent[True], done[False] / spent[False]

    async def audit_writer(ledger_on: bool) -> float:
        """``writer_records`` records through the audit writer from ``producers`` tasks."""
        batch = records[: options.writer_records]
        await _reset(admin)
        await admin.execute(capture[ledger_on])
        try:
            started = time.perf_counter()
            async with repo.audit_writer() as writer:
                todo = iter(batch)

                async def producer() -> None:
                    for record in todo:
                        await writer.write(record)

                await asyncio.gather(*(producer() for _ in range(options.producers)))
            return len(batch) / (time.perf_counter() - started)
        finally:
            await admin.execute(capture[True])

    async def inserts(batch: Sequence[ValidationRecord]) -> tuple[float, float]:
        """Blocks of single inserts, the ledger on and off in turn (commit latency drifts
        on a shared machine: short alternating blocks see the same drift)."""
        spent = {True: 0.0, False: 0.0}
        done = {True: 0, False: 0}
        await _reset(admin)
        for n, start in enumerate(range(0, len(batch), _BLOCK)):
            for on in (True, False) if n % 2 == 0 else (False, True):
                await admin.execute(load_sql(f"bench/ledger_capture_{'on' if on else 'off'}"))
                block = batch[start : start + _BLOCK]
                started = time.perf_counter()
                for record in block:
                    await repo.insert(record)
                spent[on] += time.perf_counter() - started
                done[on] += len(block)
        await admin.execute(load_sql("bench/ledger_capture_on"))
        return done[True] / spent[True], done[False] / spent[False]

    try:
        for n in range(options.rounds):
            order = (True, False) if n % 2 == 0 else (False, True)
            for on in order:
                rates["copy_on" if on else "copy_off"].append(await copy(on))
            with_ledger, without = await chunked(n)
            rates["chunk_on"].append(with_ledger)
            rates["chunk_off"].append(without)
            with_ledger, without = await inserts(singles)
            rates["ins_on"].append(with_ledger)
            rates["ins_off"].append(without)
            for on in order:
                rates["aw_on" if on else "aw_off"].append(await audit_writer(on))
        await _reset(admin)
        await repo.bulk_insert(records)  # left in place, with the ledger, for verify
    finally:
        await admin.close()
        await pool.close()
    copy_on, copy_off = _median(rates["copy_on"]), _median(rates["copy_off"])
    ins_on, ins_off = _median(rates["ins_on"]), _median(rates["ins_off"])
    chunk_on, chunk_off = _median(rates["chunk_on"]), _median(rates["chunk_off"])
    aw_on, aw_off = _median(rates["aw_on"]), _median(rates["aw_off"])
    return {
        "rows": len(records),
        "copy_with_ledger_rows_s": round(copy_on),
        "copy_without_ledger_rows_s": round(copy_off),
        "copy_ratio": round(copy_on / copy_off, 3),
        "copy_rounds_with": [round(r) for r in rates["copy_on"]],
        "copy_rounds_without": [round(r) for r in rates["copy_off"]],
        "copy_chunks": options.chunks,
        "copy_chunked_with_ledger_rows_s": round(chunk_on),
        "copy_chunked_without_ledger_rows_s": round(chunk_off),
        "copy_chunked_ratio": round(chunk_on / chunk_off, 3),
        "copy_chunked_rounds_ratio": [
            round(a / b, 3) for a, b in zip(rates["chunk_on"], rates["chunk_off"], strict=True)
        ],
        "insert_calls": len(singles),
        "insert_with_ledger_rows_s": round(ins_on),
        "insert_without_ledger_rows_s": round(ins_off),
        "insert_ratio": round(ins_on / ins_off, 3),
        "writer_records": min(options.writer_records, len(records)),
        "writer_producers": options.producers,
        "writer_with_ledger_rows_s": round(aw_on),
        "writer_without_ledger_rows_s": round(aw_off),
        "writer_ratio": round(aw_on / aw_off, 3),
        "writer_rounds_with": [round(r) for r in rates["aw_on"]],
        "writer_rounds_without": [round(r) for r in rates["aw_off"]],
    }


def _scan_rate(url: str) -> tuple[int, float]:
    with psycopg.connect(url) as conn, conn.cursor(name="bench_scan") as cur:
        started = time.perf_counter()
        cur.execute(load_sql("bench/scan_rows"))
        rows = 0
        while batch := cur.fetchmany(10_000):  # as the verifier fetches
            rows += sum(1 for _ in batch)
        return rows, rows / (time.perf_counter() - started)


def _verify_rates(url: str, rounds: int) -> dict[str, Any]:
    sealed = ledger.seal(url)
    digest = ledger.latest_digest(url)
    scans, verifies = [], []
    report = None
    for _ in range(rounds):
        _, rate = _scan_rate(url)
        scans.append(rate)
        report = ledger.verify(url, digest)
        if not report.ok:
            raise AssertionError("verify failed on untouched rows: " + "; ".join(report.lines()))
        verifies.append(report.rows / report.duration_s)
    assert report is not None
    scan, verify = _median(scans), _median(verifies)
    return {
        "sealed_entries": sealed.entry_count if sealed else 0,
        "verified_rows": report.rows,
        "verify_rows_s": round(verify),
        "scan_rows_s": round(scan),
        "verify_slowdown_vs_scan": round(scan / verify, 2),
        "verify_rounds_rows_s": [round(r) for r in verifies],
        "scan_rounds_rows_s": [round(r) for r in scans],
    }


def _timed(conn: psycopg.Connection[Any], statement: str, times: int) -> float:
    started = time.perf_counter()
    for _ in range(times):
        conn.execute(statement)
    return (time.perf_counter() - started) / times


def _event_trigger_costs(url: str, rounds: int) -> dict[str, Any]:
    """Seconds per refresh and per lone DROP TABLE with and without the drop event triggers."""
    refresh, probe = load_sql("bench/refresh_view_concurrently"), load_sql("bench/drop_probe")
    switch = {
        True: load_sql("bench/ledger_event_triggers_on"),
        False: load_sql("bench/ledger_event_triggers_off"),
    }
    spent: dict[tuple[str, bool], list[float]] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(load_sql("bench/refresh_view"))
        try:
            for n in range(max(rounds, 1) * 2):
                for on in (True, False) if n % 2 == 0 else (False, True):
                    conn.execute(switch[on])
                    spent.setdefault(("refresh", on), []).append(_timed(conn, refresh, 1))
                    spent.setdefault(("drop", on), []).append(_timed(conn, probe, _DROPS))
        finally:
            conn.execute(switch[True])
    med = {key: _median(values) for key, values in spent.items()}
    return {
        "refresh_concurrently_with_s": round(med["refresh", True], 4),
        "refresh_concurrently_without_s": round(med["refresh", False], 4),
        "refresh_ratio": round(med["refresh", False] / med["refresh", True], 3),
        "drop_table_with_ms": round(med["drop", True] * 1000, 3),
        "drop_table_without_ms": round(med["drop", False] * 1000, 3),
        "event_triggers_ms_per_drop": round((med["drop", True] - med["drop", False]) * 1000, 3),
    }


def run(url: str, options: Options, settings: Settings | None = None) -> dict[str, Any]:
    """Every figure above, in one scratch database."""
    settings = settings or Settings.from_env()
    with scratch_database(url) as scratch:
        results: dict[str, Any] = {"writes": asyncio.run(_write_rates(scratch, options, settings))}
        results["verify"] = _verify_rates(scratch, options.rounds)
        results["event_triggers"] = _event_trigger_costs(scratch, options.rounds)
    return results
