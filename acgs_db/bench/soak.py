"""Soak: the mixed pgbench workload at a fixed rate with the refresher running, then a check
that nothing failed and every acknowledged write is stored.

Bounded (at most an hour) and loopback only, because it writes: each mixed transaction is one
validation request (cache look-up, history, one INSERT, cache upsert), so the table must grow
by exactly the number of transactions pgbench acknowledged.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from acgs_db.bench.pgbench import RunOptions, ScriptName, prepare_run
from acgs_db.errors import ConfigurationError
from acgs_db.pool import create_pool
from acgs_db.refresher import MetricsRefresher
from acgs_db.resources import load_sql
from acgs_db.settings import Settings
from acgs_db.tooling.loader import load
from acgs_db.tooling.synthetic import Workload

MAX_MINUTES = 60.0


@dataclass(frozen=True, slots=True)
class SoakOptions:
    minutes: float = 2.0
    rate: float = 150.0
    clients: int = 4
    refresh_interval: float = 15.0
    sample_rows: int = 200_000
    """Rows loaded first when the table is empty."""


def _loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host in ("", "localhost") or host.startswith("/"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def soak(url: str, options: SoakOptions, settings: Settings | None = None) -> dict[str, Any]:
    """Run the soak; the result says whether it passed (``ok``) and why."""
    settings = settings or Settings.from_env()
    if not _loopback(url):
        raise ConfigurationError("the soak writes and runs only against a loopback server")
    if not 0 < options.minutes <= MAX_MINUTES:
        raise ConfigurationError(f"minutes must lie in (0, {MAX_MINUTES:g}]")
    pool = await create_pool(url, settings=settings, min_size=2, max_size=4)
    try:
        if await pool.fetchval(load_sql("bench/count_validations"), timeout=600) == 0:
            await load(
                pool, Workload(rows=options.sample_rows, tenants=100, days=2), settings=settings
            )
        prepared = await asyncio.to_thread(
            prepare_run,
            url,
            RunOptions(
                script=ScriptName.MIXED,
                clients=options.clients,
                threads=min(2, options.clients),
                duration=max(1, round(options.minutes * 60)),
                rate=options.rate,
            ),
            settings=settings,
        )
        before = await pool.fetchval(load_sql("bench/count_validations"), timeout=600)
        refresher = MetricsRefresher(pool, interval=options.refresh_interval, settings=settings)
        refresher.start()
        started = time.perf_counter()
        try:
            result = await asyncio.to_thread(prepared.execute)
        finally:
            await refresher.stop()
        after = await pool.fetchval(load_sql("bench/count_validations"), timeout=600)
    finally:
        await pool.close()
    log = result.log
    latency = result.latency_ms
    stored = after - before
    status = refresher.status
    ok = log.failures == 0 and log.skipped == 0 and stored == log.transactions
    return {
        "ok": ok,
        "minutes": options.minutes,
        "rate": options.rate,
        "seconds": round(time.perf_counter() - started, 1),
        "transactions": log.transactions,
        "failures": log.failures,
        "skipped": log.skipped,
        "tps": round(result.tps, 1),
        "latency_ms": latency.to_json() if latency else None,
        "rows_acknowledged": log.transactions,
        "rows_stored": stored,
        "refreshes": status.refreshes,
        "refresh_skips": status.skips,
        "refresh_failures": status.failures,
        "last_refresh_s": status.last_duration_s,
    }
