"""Batch ids that cannot collide silently: the ledger keeps the SHA-256 of a batch's rows, a
retry with the same rows writes nothing, a retry with other rows raises BatchConflictError and
writes nothing, also when both calls run at once."""

from __future__ import annotations

import asyncio
import hashlib
import math
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import asyncpg
import pytest
from conftest import count_rows
from faults_support import PausingStream, the_backend_waiting
from hypothesis import given
from hypothesis import strategies as st

from acgs_db import BatchConflictError, ValidationRecord, ValidationRepository
from acgs_db.constants import CONSTITUTIONAL_HASH
from acgs_db.digest import HEADER, BatchDigest, score_bytes, score_text
from acgs_db.pool import Pool
from acgs_db.records import Limits, row_checker


def _records(tenant: str, n: int) -> list[ValidationRecord]:
    return [
        ValidationRecord(tenant, f"d{i % 13}", Decimal(i % 100) / 100, {"i": i}, i)
        for i in range(n)
    ]


async def _ledger(pool: Pool, batch: str) -> asyncpg.Record | None:
    return await pool.fetchrow("SELECT rows, digest FROM ingest_batches WHERE batch_id = $1", batch)


# -- the encoding ---------------------------------------------------------------------------


def test_the_digest_follows_the_documented_encoding() -> None:
    """Two rows encoded by hand as acgs_db.digest documents it: texts length-prefixed, the
    score in 4 decimals as numeric(5,4) rounds it, details as the bytes COPY sends, NULLs
    and a created_at left to the server as N, a given one as microseconds since the epoch."""
    now = datetime(2026, 12, 1, tzinfo=UTC)
    when = datetime(2026, 11, 30, 12, 0, 0, 5, tzinfo=UTC)
    check = row_checker(Limits(65536, 86_400_000, timedelta(minutes=5)), now)
    records = [
        ValidationRecord("tenant-é", "d1", 0.12345, {"a": 1}, 7, when),
        ValidationRecord("t2", "d2", Decimal("-0"), None, None, None),
    ]
    digest = BatchDigest()
    for record in records:
        digest.add(check(record), record.created_at is not None)
    expected = hashlib.sha256(
        HEADER
        + b"T9:tenant-\xc3\xa9T16:" + CONSTITUTIONAL_HASH.encode() + b"T2:d1"
        + b"D0.1235;J8:\x01{\"a\":1}I7;S" + str(int(when.timestamp()) * 10**6 + 5).encode() + b";"
        + b"T2:t2T16:" + CONSTITUTIONAL_HASH.encode() + b"T2:d2"
        + b"D0.0000;NNN"
    ).digest()  # fmt: skip
    assert digest.rows == 2
    assert digest.digest() == expected


TIES = [j / 32 for j in range(33)]  # exact binary ties of 4-place rounding, and neighbours
AWKWARD = [
    *TIES,
    *(math.nextafter(x, 2.0) for x in TIES if x < 1),
    *(math.nextafter(x, -1.0) for x in TIES if x > 0),
    0.00015,
    0.00005,
    0.12345,
    0.99995,
    0.99994999,
    -0.0,
    5e-324,
]


@given(st.one_of(st.floats(0.0, 1.0), st.sampled_from(AWKWARD)))
def test_the_fast_score_encoding_is_the_exact_one(score: float) -> None:
    assert score_bytes(score) == score_text(score)


async def test_the_digest_score_is_what_numeric_stores(
    repo: ValidationRepository, pool: Pool, tenant: str
) -> None:
    """asyncpg sends a float's exact value; numeric(5,4) rounds it half away from zero: the
    digest's text is the stored value's, ties included."""
    records = [ValidationRecord(tenant, f"d{i}", score) for i, score in enumerate(AWKWARD)]
    assert await repo.bulk_insert(records) == len(AWKWARD)
    stored = await pool.fetch(
        "SELECT decision_id, compliance_score::text FROM constitutional_validations"
        " WHERE tenant_id = $1",
        tenant,
    )
    by_decision = {row[0]: row[1].encode() for row in stored}
    for i, score in enumerate(AWKWARD):
        assert by_decision[f"d{i}"] == score_bytes(score), score


# -- retries --------------------------------------------------------------------------------


@pytest.mark.parametrize("connections", [1, 2])
async def test_a_retry_with_the_same_rows_writes_nothing(
    repo: ValidationRepository, pool: Pool, tenant: str, connections: int
) -> None:
    """created_at left to the server: the retry runs at another server time, and still
    counts as the same rows."""
    batch = f"same-{tenant}"
    records = _records(tenant, 12_000)
    assert await repo.bulk_insert(records, batch_id=batch, connections=connections) == 12_000
    ledger = await _ledger(pool, batch)
    assert ledger is not None and ledger["rows"] == 12_000 and len(ledger["digest"]) == 32
    await asyncio.sleep(0.01)
    assert await repo.bulk_insert(records, batch_id=batch, connections=connections) == 0
    assert await repo.bulk_insert(iter(records), batch_id=batch) == 0  # either path decides
    assert await count_rows(pool, tenant) == 12_000


async def test_values_stored_alike_are_the_same_rows(
    repo: ValidationRepository, pool: Pool, tenant: str
) -> None:
    """The digest is over what is stored: a score numeric(5,4) rounds to the same value, the
    same instant in another time zone."""
    when = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    batch = f"alike-{tenant}"
    first = [ValidationRecord(tenant, "d", 0.12345, {"k": 1}, 3, when)]
    again = [
        ValidationRecord(
            tenant,
            "d",
            Decimal("0.1235"),
            {"k": 1},
            3,
            when.astimezone(timezone(timedelta(hours=5))),
        )
    ]
    assert await repo.bulk_insert(first, batch_id=batch) == 1
    assert await repo.bulk_insert(again, batch_id=batch) == 0
    assert await count_rows(pool, tenant) == 1


def _changed(records: list[ValidationRecord], how: str) -> list[ValidationRecord]:
    changed = list(records)
    last = changed[-1]
    if how == "score":
        assert isinstance(last.compliance_score, Decimal)
        changed[-1] = last._replace(compliance_score=Decimal("0.0001") + last.compliance_score)
    elif how == "details":
        changed[-1] = last._replace(validation_details={"i": -1})
    elif how == "created_at":
        changed[-1] = last._replace(created_at=datetime.now(UTC))
    elif how == "order":
        changed[0], changed[1] = changed[1], changed[0]
    elif how == "one more":
        changed.append(last)
    elif how == "one fewer":
        changed.pop()
    return changed


@pytest.mark.parametrize("connections", [1, 2])
@pytest.mark.parametrize(
    "how", ["score", "details", "created_at", "order", "one more", "one fewer"]
)
async def test_a_retry_with_other_rows_raises_and_writes_nothing(
    repo: ValidationRepository, pool: Pool, tenant: str, connections: int, how: str
) -> None:
    batch = f"other-{tenant}"
    records = _records(tenant, 11_000)
    assert await repo.bulk_insert(records, batch_id=batch, connections=connections) == 11_000
    ledger = await _ledger(pool, batch)
    with pytest.raises(BatchConflictError, match=batch) as caught:
        await repo.bulk_insert(_changed(records, how), batch_id=batch, connections=connections)
    assert caught.value.batch_id == batch
    assert await count_rows(pool, tenant) == 11_000
    assert await _ledger(pool, batch) == ledger
    assert await pool.fetchval("SELECT count(*) FROM pg_prepared_xacts") == 0


async def test_a_ledger_row_without_a_digest_counts_as_the_same_rows(
    repo: ValidationRepository, pool: Pool, tenant: str
) -> None:
    """Batches committed before migration 0009 have no digest: a retry writes nothing."""
    batch = f"old-{tenant}"
    assert await repo.bulk_insert(_records(tenant, 10), batch_id=batch) == 10
    await pool.execute("UPDATE ingest_batches SET digest = NULL WHERE batch_id = $1", batch)
    assert await repo.bulk_insert(_records(tenant, 5), batch_id=batch) == 0
    assert await count_rows(pool, tenant) == 10


# -- two calls at once ------------------------------------------------------------------------


@pytest.mark.parametrize("connections", [1, 2])
@pytest.mark.parametrize("same", [True, False], ids=["same-rows", "other-rows"])
async def test_two_concurrent_calls_with_one_batch_id(
    repo: ValidationRepository,
    pool: Pool,
    database_url: str,
    tenant: str,
    connections: int,
    same: bool,
) -> None:
    """The first call claims the id and stops mid-COPY; the second one's claim waits on the
    first's (uncommitted) ledger row. Once the first commits, the second returns 0 for the
    same rows or raises BatchConflictError for others; the first batch alone is stored."""
    batch = f"race-{tenant}"
    records = _records(tenant, 12_000)
    stream = PausingStream(records, 7_500)
    first = asyncio.create_task(repo.bulk_insert(stream, batch_id=batch, connections=connections))
    await asyncio.wait_for(stream.paused.wait(), timeout=60)
    second_records = records if same else _changed(records, "details")
    second = asyncio.create_task(
        repo.bulk_insert(second_records, batch_id=batch, connections=connections)
    )
    admin = await asyncpg.connect(database_url)
    try:
        await the_backend_waiting(admin, "Lock", "-- Claim a batch id")
    finally:
        await admin.close()
    assert not second.done()
    stream.resume()
    assert await first == 12_000
    if same:
        assert await second == 0
    else:
        with pytest.raises(BatchConflictError, match=batch):
            await second
    assert await count_rows(pool, tenant) == 12_000
    stored = await pool.fetchval(
        "SELECT sum((validation_details->>'i')::bigint) FROM constitutional_validations"
        " WHERE tenant_id = $1",
        tenant,
    )
    assert stored == sum(range(12_000))  # the first call's rows, not the second's
