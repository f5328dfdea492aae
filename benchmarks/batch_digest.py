#!/usr/bin/env python3
"""Cost of a batch id (ledger row + SHA-256 digest of the rows, acgs_db.digest): bulk_insert of
the same synthetic records with and without batch_id, interleaved in one run, on
ACGS_DATABASE_URL or the embedded cluster (ACGS_DEV_DIR). Also the Python side alone: checking
the records into COPY rows, with and without digesting them.

    .venv/bin/python benchmarks/batch_digest.py [rows] [rounds]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime

from acgs_db import ValidationRepository, create_pool
from acgs_db.digest import BatchDigest
from acgs_db.records import Limits, row_checker
from acgs_db.settings import Settings
from acgs_db.tooling import schema
from acgs_db.tooling.devdb import database_url
from acgs_db.tooling.synthetic import Workload, generate


async def main(rows: int, rounds: int) -> None:
    settings = Settings.from_env()
    url = database_url(settings)
    schema.upgrade(url)
    records = list(generate(Workload(rows=rows, tenants=10, days=2, decisions=50)))
    limits = Limits(
        settings.max_details_bytes, settings.max_processing_time_ms, settings.max_clock_skew
    )

    check = row_checker(limits, datetime.now(UTC))
    python: dict[str, list[float]] = {"check": [], "check+digest": []}
    for _ in range(rounds):
        started = time.perf_counter()
        for record in records:
            check(record)
        python["check"].append(time.perf_counter() - started)
        digest = BatchDigest()
        started = time.perf_counter()
        for record in records:
            digest.add(check(record), record.created_at is not None)
        digest.digest()
        python["check+digest"].append(time.perf_counter() - started)

    pool = await create_pool(url, settings=settings, min_size=1, max_size=2)
    repo = ValidationRepository(pool, settings)
    timings: dict[str, list[float]] = {"without batch_id": [], "with batch_id": []}
    try:
        for round_ in range(rounds):
            order = list(timings) if round_ % 2 == 0 else list(reversed(timings))
            for name in order:
                batch = f"bench-{uuid.uuid4()}" if name == "with batch_id" else None
                started = time.perf_counter()
                assert await repo.bulk_insert(records, batch_id=batch) == rows
                timings[name].append(time.perf_counter() - started)
    finally:
        await pool.close()

    print(f"{rows} records, {rounds} rounds (median, min)")
    for name, values in {**python, **timings}.items():
        median = statistics.median(values)
        print(
            f"  {name:18} {median:7.3f} s  {min(values):7.3f} s  "
            f"{rows / median:10,.0f} rows/s  {median / rows * 1e6:6.2f} us/row"
        )
    base = statistics.median(timings["without batch_id"])
    extra = statistics.median(timings["with batch_id"]) - base
    print(f"  batch_id costs {extra:+.3f} s ({extra / base:+.1%}) per {rows} rows")


if __name__ == "__main__":
    asyncio.run(
        main(
            int(sys.argv[1]) if len(sys.argv) > 1 else 200_000,
            int(sys.argv[2]) if len(sys.argv) > 2 else 5,
        )
    )
