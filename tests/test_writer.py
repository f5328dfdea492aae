"""The audit writer against a real server: every acknowledged record stored exactly once, each
caller answered for its own record, backpressure, flush on exit, metrics.

Batches are held up, where a test needs records queued or in flight, by an admin transaction
that locks the batch ledger (every batch's first statement claims its row there)."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal

import asyncpg
import psycopg
import pytest
from conftest import count_rows
from faults_support import until

from acgs_db import (
    AcgsDbError,
    AuditWriteError,
    InvalidRecordError,
    Settings,
    ValidationRecord,
    ValidationRepository,
    WriterClosedError,
    WriterOverloaded,
)
from acgs_db.metrics import Metrics
from acgs_db.pool import create_pool
from acgs_db.tooling import schema
from acgs_db.writer import AuditWriter


def _record(tenant: str, n: int, **changes: object) -> ValidationRecord:
    record = ValidationRecord(tenant, f"d{n % 7}", Decimal(n % 100) / 100, {"n": n}, n % 500)
    return record._replace(**changes)


async def _stored_numbers(pool: asyncpg.Pool, tenant: str) -> list[int]:
    rows = await pool.fetch(
        "SELECT (validation_details->>'n')::int FROM constitutional_validations"
        " WHERE tenant_id = $1",
        tenant,
    )
    return sorted(row[0] for row in rows)


@contextlib.asynccontextmanager
async def _ledger_locked(url: str) -> AsyncIterator[asyncpg.Connection]:
    """Batches block on their ledger claim until the block ends."""
    admin = await asyncpg.connect(url)
    try:
        async with admin.transaction():
            await admin.execute("LOCK TABLE ingest_batches IN EXCLUSIVE MODE")
            yield admin
    finally:
        await admin.close()


async def _claims_waiting(conn: asyncpg.Connection, n: int) -> None:
    """Until ``n`` backends wait for the ledger's lock. (By the wait alone: a connection that
    prepares the claim statement for the first time waits while parsing it, and
    ``pg_stat_activity`` still shows its previous statement then.)"""

    async def waiting() -> bool:
        count = await conn.fetchval(
            "SELECT count(*) FROM pg_locks WHERE NOT granted"
            " AND relation = 'ingest_batches'::regclass"
        )
        return bool(count == n)

    await until(waiting)


async def test_every_acknowledged_record_is_stored_exactly_once(
    repo: ValidationRepository, pool: asyncpg.Pool, tenant: str
) -> None:
    """Many producers, random pauses and small random batch limits; some callers give up
    (a timeout cancels them) at random moments. Every acknowledged record is stored once; a
    record is stored only if acknowledged or cancelled (cancelled in flight: written, unheard),
    never twice."""
    rng = random.Random(16)
    acknowledged: set[int] = set()
    cancelled: set[int] = set()

    async def producer(writer: AuditWriter, first: int, count: int) -> None:
        for n in range(first, first + count):
            if rng.random() < 0.3:
                await asyncio.sleep(rng.random() / 500)
            if rng.random() < 0.1:
                try:
                    await asyncio.wait_for(writer.write(_record(tenant, n)), rng.random() / 1000)
                except TimeoutError:
                    cancelled.add(n)
                    continue
            else:
                await writer.write(_record(tenant, n))
            acknowledged.add(n)

    for round_, (max_batch, connections) in enumerate(((1, 2), (7, 1), (100, 3))):
        async with repo.audit_writer(max_batch=max_batch, connections=connections) as writer:
            sizes = [rng.randint(1, 60) for _ in range(40)]
            starts = [round_ * 100_000 + i * 1000 for i in range(len(sizes))]
            await asyncio.gather(
                *(producer(writer, s, n) for s, n in zip(starts, sizes, strict=True))
            )
            assert writer.status.failed == 0
    stored = await _stored_numbers(pool, tenant)
    assert len(stored) == len(set(stored))  # never twice
    assert acknowledged <= set(stored)
    assert set(stored) - acknowledged <= cancelled
    assert cancelled  # the random timeouts did cancel some callers
    assert len(acknowledged) > 1000


async def test_a_caller_cancelled_while_queued_is_never_written(
    repo: ValidationRepository, pool: asyncpg.Pool, tenant: str, database_url: str
) -> None:
    async with repo.audit_writer(connections=1) as writer:
        async with _ledger_locked(database_url) as admin:
            first = asyncio.create_task(writer.write(_record(tenant, 0)))
            await _claims_waiting(admin, 1)  # record 0 is in flight, blocked
            queued = [asyncio.create_task(writer.write(_record(tenant, n))) for n in range(1, 11)]
            await until(lambda: writer.status.queued == 10)
            assert writer.status.in_flight == 1
            for task in queued[::2]:  # records 1, 3, 5, 7, 9
                task.cancel()
            await asyncio.sleep(0.01)
        await first
        await asyncio.gather(*queued[1::2])
    assert all(task.cancelled() for task in queued[::2])
    assert await _stored_numbers(pool, tenant) == [0, 2, 4, 6, 8, 10]


async def test_a_bad_record_fails_only_its_own_write(
    repo: ValidationRepository, pool: asyncpg.Pool, tenant: str
) -> None:
    bad = _record(tenant, 999, compliance_score=3.0)
    async with repo.audit_writer() as writer:
        results = await asyncio.gather(
            *(writer.write(_record(tenant, n)) for n in range(50)),
            writer.write(bad),
            *(writer.write(_record(tenant, n)) for n in range(50, 100)),
            return_exceptions=True,
        )
        status = writer.status
    errors = [r for r in results if r is not None]
    assert len(errors) == 1
    assert isinstance(errors[0], InvalidRecordError)
    assert errors[0].field == "compliance_score"
    assert await _stored_numbers(pool, tenant) == list(range(100))
    assert (status.written, status.failed) == (100, 0)


@pytest.fixture
def refusing_database(pg_server: object, fresh_database: str) -> Iterator[str]:
    """A database whose server refuses (check_violation, from a trigger) decision 'refused',
    which the client checks accept."""
    schema.upgrade(fresh_database)
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            " IF NEW.decision_id = 'refused' THEN"
            "   RAISE EXCEPTION 'refused by the test' USING ERRCODE = 'check_violation';"
            " END IF; RETURN NEW; END $$"
        )
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON constitutional_validations"
            " FOR EACH ROW EXECUTE FUNCTION refuse()"
        )
    yield fresh_database


async def test_a_record_the_server_refuses_fails_alone(refusing_database: str) -> None:
    """The refused record shares a batch with 40 others: the batch is split until the refused
    record stands alone; its caller gets AuditWriteError (not committed), the others are
    written."""
    pool = await create_pool(
        refusing_database, settings=Settings.from_env({}), min_size=1, max_size=4
    )
    repo = ValidationRepository(pool, Settings.from_env({}))
    try:
        async with repo.audit_writer(connections=1) as writer:
            async with _ledger_locked(refusing_database) as admin:
                first = asyncio.create_task(writer.write(_record("t", 0)))
                await _claims_waiting(admin, 1)
                tasks = [asyncio.create_task(writer.write(_record("t", n))) for n in range(1, 41)]
                tasks.insert(
                    20, asyncio.create_task(writer.write(_record("t", 99, decision_id="refused")))
                )
                await until(lambda: writer.status.queued == 41)
            await first
            results = await asyncio.gather(*tasks, return_exceptions=True)
            status = writer.status
        errors = [r for r in results if r is not None]
        assert len(errors) == 1
        assert isinstance(errors[0], AuditWriteError)
        assert errors[0].maybe_committed is False
        assert "refused by the test" in str(errors[0]) and "not committed" in str(errors[0])
        assert await _stored_numbers(pool, "t") == list(range(41))
        assert (status.written, status.failed) == (41, 1)
        assert status.batches > 2  # the 41-record batch was split
    finally:
        await pool.close()


async def test_backpressure_at_max_queue(
    repo: ValidationRepository, pool: asyncpg.Pool, tenant: str, database_url: str
) -> None:
    async with repo.audit_writer(connections=1, max_queue=5) as writer:
        async with _ledger_locked(database_url) as admin:
            tasks = [asyncio.create_task(writer.write(_record(tenant, 0)))]
            await _claims_waiting(admin, 1)
            tasks += [asyncio.create_task(writer.write(_record(tenant, n))) for n in range(1, 6)]
            await until(lambda: writer.status.queued == 5)
            with pytest.raises(WriterOverloaded):
                await writer.write(_record(tenant, 6), wait=False)
            waiting = asyncio.create_task(writer.write(_record(tenant, 7)))
            await asyncio.sleep(0.1)
            assert not waiting.done()
            assert writer.status.queued == 5
        await asyncio.gather(*tasks, waiting)
    assert await _stored_numbers(pool, tenant) == [0, 1, 2, 3, 4, 5, 7]


async def test_a_producer_that_outruns_the_server_keeps_the_queue_bounded(
    repo: ValidationRepository, pool: asyncpg.Pool, tenant: str
) -> None:
    """5,000 writes started at once against max_queue=50: the queue never holds more than 50
    and at most connections x max_batch records are in flight."""
    deepest = [0, 0]
    async with repo.audit_writer(connections=2, max_queue=50, max_batch=20) as writer:

        async def watch() -> None:
            while True:
                status = writer.status
                deepest[0] = max(deepest[0], status.queued)
                deepest[1] = max(deepest[1], status.in_flight)
                await asyncio.sleep(0)

        watcher = asyncio.create_task(watch())
        await asyncio.gather(*(writer.write(_record(tenant, n)) for n in range(5000)))
        watcher.cancel()
    assert 0 < deepest[0] <= 50
    assert 0 < deepest[1] <= 40
    assert await count_rows(pool, tenant) == 5000


async def test_leaving_the_context_flushes_what_is_queued(
    repo: ValidationRepository, pool: asyncpg.Pool, tenant: str
) -> None:
    async with repo.audit_writer() as writer:
        tasks = [asyncio.create_task(writer.write(_record(tenant, n))) for n in range(300)]
        await asyncio.sleep(0)  # every task has queued its record
    assert all(task.done() and task.exception() is None for task in tasks)
    assert await count_rows(pool, tenant) == 300
    assert writer.status.closed and writer.status.written == 300
    with pytest.raises(WriterClosedError):
        await writer.write(_record(tenant, 301))
    assert await count_rows(pool, tenant) == 300


async def test_created_at_none_is_the_batch_transaction_time(
    repo: ValidationRepository, pool: asyncpg.Pool, tenant: str
) -> None:
    async with repo.audit_writer() as writer:
        await asyncio.gather(*(writer.write(_record(tenant, n)) for n in range(200)))
    mismatched = await pool.fetchval(
        "SELECT count(*) FROM constitutional_validations v WHERE tenant_id = $1"
        " AND NOT EXISTS (SELECT 1 FROM ingest_batches b WHERE b.committed_at = v.created_at)",
        tenant,
    )
    assert mismatched == 0


async def test_a_tenant_scoped_repository_refuses_clearly(pool: asyncpg.Pool) -> None:
    scoped = ValidationRepository(pool, Settings.from_env({}), tenant_scoped=True)
    with pytest.raises(AcgsDbError, match="not available for tenant-scoped"):
        scoped.audit_writer()


async def test_metrics_and_status_count_records_and_batches(
    pool: asyncpg.Pool, tenant: str
) -> None:
    metrics = Metrics()
    repo = ValidationRepository(pool, Settings.from_env({}), metrics=metrics)
    async with repo.audit_writer(max_batch=10) as writer:
        await asyncio.gather(*(writer.write(_record(tenant, n)) for n in range(95)))
        status = writer.status
    value = metrics.registry.get_sample_value
    assert value("acgs_db_writer_records_total") == 95 == status.written
    assert value("acgs_db_writer_batches_total") == status.batches >= 10
    assert value("acgs_db_writer_batch_size_count") == status.batches
    assert value("acgs_db_writer_batch_size_sum") == 95
    assert value("acgs_db_writer_ack_latency_seconds_count") == 95
    assert value("acgs_db_writer_queue_depth") == 0
    assert (status.queued, status.in_flight, status.failed) == (0, 0, 0)


async def test_an_idle_server_gets_a_record_at_once_and_a_busy_one_a_fuller_batch(
    repo: ValidationRepository, pool: asyncpg.Pool, tenant: str, database_url: str
) -> None:
    """``max_delay`` is a linger only while another batch is in flight: with nothing in
    flight a record is sent at once (no timer, even a long one); with a batch in flight the
    free connection waits up to max_delay for more records, then sends them."""
    async with repo.audit_writer(connections=2, max_delay=30.0) as writer:
        await asyncio.wait_for(writer.write(_record(tenant, 0)), timeout=10)
    async with repo.audit_writer(connections=2, max_delay=0.5) as writer:
        async with _ledger_locked(database_url) as admin:
            first = asyncio.create_task(writer.write(_record(tenant, 1)))
            await _claims_waiting(admin, 1)
            more = [asyncio.create_task(writer.write(_record(tenant, n))) for n in range(2, 7)]
            await asyncio.sleep(0.2)
            assert (writer.status.queued, writer.status.in_flight) == (5, 1)  # lingering
            await until(lambda: writer.status.in_flight == 6)  # then sent, as one batch
            await _claims_waiting(admin, 2)
        await asyncio.gather(first, *more)
        assert writer.status.batches == 2
    assert await _stored_numbers(pool, tenant) == list(range(7))


async def test_writes_waiting_for_room_when_the_writer_closes_are_refused(
    repo: ValidationRepository, pool: asyncpg.Pool, tenant: str, database_url: str
) -> None:
    writer = repo.audit_writer(connections=1, max_queue=2)
    await writer.start()
    async with _ledger_locked(database_url) as admin:
        written = [asyncio.create_task(writer.write(_record(tenant, 0)))]
        await _claims_waiting(admin, 1)
        written += [asyncio.create_task(writer.write(_record(tenant, n))) for n in (1, 2)]
        await until(lambda: writer.status.queued == 2)
        refused = asyncio.create_task(writer.write(_record(tenant, 3)))
        await asyncio.sleep(0.05)
        closing = asyncio.create_task(writer.close())
        await asyncio.sleep(0.05)
        assert not closing.done()
    await closing
    await asyncio.gather(*written)
    with pytest.raises(WriterClosedError):
        await refused
    assert await _stored_numbers(pool, tenant) == [0, 1, 2]


async def test_a_cancelled_close_answers_every_caller(
    repo: ValidationRepository, pool: asyncpg.Pool, tenant: str, database_url: str
) -> None:
    """The close itself is cancelled (a shutdown deadline) while a batch is stuck: the caller
    in flight hears that its record may have been committed, the queued ones that theirs was
    not (and it is not), and nobody waits forever."""
    writer = repo.audit_writer(connections=1)
    await writer.start()
    async with _ledger_locked(database_url) as admin:
        stuck = asyncio.create_task(writer.write(_record(tenant, 0)))
        await _claims_waiting(admin, 1)
        queued = [asyncio.create_task(writer.write(_record(tenant, n))) for n in (1, 2, 3)]
        await until(lambda: writer.status.queued == 3)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(writer.close(), timeout=0.3)
        with pytest.raises(AuditWriteError) as in_flight:
            await stuck
        assert in_flight.value.maybe_committed is True
        for task in queued:
            with pytest.raises(AuditWriteError) as not_sent:
                await task
            assert not_sent.value.maybe_committed is False
    with pytest.raises(WriterClosedError):
        await writer.write(_record(tenant, 4))
    assert set(await _stored_numbers(pool, tenant)) <= {0}
