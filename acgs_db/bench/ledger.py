"""``acgs-db bench ledger``: what the tamper-evident ledger (migration 0010) costs.

In a scratch database (:mod:`acgs_db.bench.scratch`) on the configured server, in the same run:

* ``bulk_insert`` (binary COPY) of the same realistic records with the ledger's capture trigger
  and with it disabled (the baseline), alternating, median of the rounds;
* ``insert()`` one row per call, in alternating blocks of 50 calls with and without;
* ``ledger.verify`` of the loaded rows (rows/s) against a sequential scan of the same rows and
  columns streamed to the client by a server-side cursor (the floor any verifier pays).
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


@dataclass(frozen=True, slots=True)
class Options:
    rows: int = 200_000
    rounds: int = 3
    inserts: int = 2_000
    tenants: int = 100
    decisions: int = 1000


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
    rates: dict[str, list[float]] = {k: [] for k in ("copy_on", "copy_off", "ins_on", "ins_off")}

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
            with_ledger, without = await inserts(singles)
            rates["ins_on"].append(with_ledger)
            rates["ins_off"].append(without)
        await _reset(admin)
        await repo.bulk_insert(records)  # left in place, with the ledger, for verify
    finally:
        await admin.close()
        await pool.close()
    copy_on, copy_off = _median(rates["copy_on"]), _median(rates["copy_off"])
    ins_on, ins_off = _median(rates["ins_on"]), _median(rates["ins_off"])
    return {
        "rows": len(records),
        "copy_with_ledger_rows_s": round(copy_on),
        "copy_without_ledger_rows_s": round(copy_off),
        "copy_ratio": round(copy_on / copy_off, 3),
        "copy_rounds_with": [round(r) for r in rates["copy_on"]],
        "copy_rounds_without": [round(r) for r in rates["copy_off"]],
        "insert_calls": len(singles),
        "insert_with_ledger_rows_s": round(ins_on),
        "insert_without_ledger_rows_s": round(ins_off),
        "insert_ratio": round(ins_on / ins_off, 3),
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


def run(url: str, options: Options, settings: Settings | None = None) -> dict[str, Any]:
    """Every figure above, in one scratch database."""
    settings = settings or Settings.from_env()
    with scratch_database(url) as scratch:
        results: dict[str, Any] = {"writes": asyncio.run(_write_rates(scratch, options, settings))}
        results["verify"] = _verify_rates(scratch, options.rounds)
    return results
