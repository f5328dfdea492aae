"""Bulk ingest beyond one stream: idempotent batches, COPY over several connections with
two-phase commit, and recovery of batches whose writer died between PREPARE and COMMIT."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from conftest import count_rows, prepare_part

from acgs_db import InvalidRecordError, ValidationRecord, ValidationRepository
from acgs_db.pool import Pool


async def _prepared(pool: Pool) -> list[str]:
    return [r[0] for r in await pool.fetch("SELECT gid FROM pg_prepared_xacts")]


def _records(tenant: str, n: int) -> list[ValidationRecord]:
    return [
        ValidationRecord(tenant, f"d{i % 13}", Decimal(i % 100) / 100, {"i": i}, i)
        for i in range(n)
    ]


async def test_a_batch_id_makes_a_retry_write_nothing(
    repo: ValidationRepository, pool: Pool, tenant: str
) -> None:
    batch = f"batch-{tenant}"
    assert await repo.bulk_insert(_records(tenant, 100), batch_id=batch) == 100
    assert await repo.bulk_insert(_records(tenant, 100), batch_id=batch) == 0
    assert await count_rows(pool, tenant) == 100
    rows = await pool.fetchval("SELECT rows FROM ingest_batches WHERE batch_id = $1", batch)
    assert rows == 100


async def test_a_failed_batch_leaves_its_id_free_for_the_retry(
    repo: ValidationRepository, pool: Pool, tenant: str
) -> None:
    batch = f"batch-{tenant}"
    bad = [*_records(tenant, 10), ValidationRecord(tenant, "d", 3.0)]
    with pytest.raises(InvalidRecordError):
        await repo.bulk_insert(bad, batch_id=batch)
    assert await repo.bulk_insert(_records(tenant, 10), batch_id=batch) == 10
    assert await count_rows(pool, tenant) == 10


async def test_copy_over_several_connections_writes_everything_once(
    repo: ValidationRepository, pool: Pool, tenant: str
) -> None:
    records = _records(tenant, 23_456)
    assert await repo.bulk_insert(records, connections=3) == 23_456
    row = await pool.fetchrow(
        "SELECT count(*), sum((validation_details->>'i')::bigint), count(DISTINCT created_at)"
        " FROM constitutional_validations WHERE tenant_id = $1",
        tenant,
    )
    assert row is not None
    assert tuple(row) == (23_456, sum(range(23_456)), 1)  # one coordinator now() for all parts
    assert await _prepared(pool) == []
    parts = await pool.fetchval(
        "SELECT parts FROM ingest_batches WHERE rows = 23456 ORDER BY committed_at DESC LIMIT 1"
    )
    assert parts == 3


async def test_a_bad_record_aborts_every_connection(
    repo: ValidationRepository, pool: Pool, tenant: str
) -> None:
    records = _records(tenant, 30_000)
    records[27_001] = ValidationRecord(tenant, "d", 0.5, processing_time_ms=-1)
    with pytest.raises(InvalidRecordError) as caught:
        await repo.bulk_insert(records, connections=2)
    assert caught.value.index == 27_001
    assert await count_rows(pool, tenant) == 0
    assert await _prepared(pool) == []
    assert await repo.bulk_insert(records[:1000], connections=2) == 1000  # the pool still serves


async def test_a_parallel_batch_id_is_idempotent_too(
    repo: ValidationRepository, pool: Pool, tenant: str
) -> None:
    batch = f"parallel-{tenant}"
    assert await repo.bulk_insert(_records(tenant, 12_000), batch_id=batch, connections=2) == 12_000
    assert await repo.bulk_insert(_records(tenant, 12_000), batch_id=batch, connections=2) == 0
    assert await count_rows(pool, tenant) == 12_000


async def _prepare_part(
    pool: Pool, tenant: str, token: uuid.UUID, part: int, *, ledger: bool
) -> None:
    async with pool.acquire() as conn:
        await prepare_part(conn, tenant, token, part, ledger=ledger)


async def test_recover_rolls_back_an_undecided_batch(
    repo: ValidationRepository, pool: Pool, tenant: str
) -> None:
    token = uuid.uuid4()
    await _prepare_part(pool, tenant, token, 0, ledger=True)
    await _prepare_part(pool, tenant, token, 1, ledger=False)
    report = await repo.recover_prepared(older_than=timedelta(0))
    assert report.rolled_back == [f"acgs_db:{token}:0", f"acgs_db:{token}:1"]
    assert report.committed == []
    assert await count_rows(pool, tenant) == 0
    assert await _prepared(pool) == []


async def test_recover_finishes_a_decided_batch(
    repo: ValidationRepository, pool: Pool, tenant: str
) -> None:
    token = uuid.uuid4()
    await _prepare_part(pool, tenant, token, 0, ledger=True)
    await _prepare_part(pool, tenant, token, 1, ledger=False)
    await pool.execute(f"COMMIT PREPARED 'acgs_db:{token}:0'")  # the coordinator died here
    report = await repo.recover_prepared(older_than=timedelta(0))
    assert report.committed == [f"acgs_db:{token}:1"]
    assert await count_rows(pool, tenant) == 20
    assert await _prepared(pool) == []


async def test_recover_leaves_young_prepared_transactions_alone(
    repo: ValidationRepository, pool: Pool, tenant: str
) -> None:
    token = uuid.uuid4()
    await _prepare_part(pool, tenant, token, 0, ledger=True)
    try:
        report = await repo.recover_prepared(older_than=timedelta(minutes=5))
        assert (report.committed, report.rolled_back) == ([], [])
    finally:
        await pool.execute(f"ROLLBACK PREPARED 'acgs_db:{token}:0'")
