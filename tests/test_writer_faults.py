"""The audit writer across faults on a private cluster of each test's own: the server killed in
the middle of batches, commits flushed but not acknowledged, connections cut before and after
the commit, and an outage longer than the writer retries. Every acknowledged record is stored,
none twice; every test ends with pg_amcheck over the cluster."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from decimal import Decimal

import asyncpg
import pytest
from faults_support import (
    SETTINGS,
    assert_no_corruption,
    backends_waiting,
    hold_commit_acknowledgements,
    kill,
    kill_and_restart,
    open_pool,
    private_cluster,
    release_commit_acknowledgements,
    the_backend_waiting,
    until,
)

from acgs_db import AuditWriteError, ValidationRecord, ValidationRepository
from acgs_db.pool import Pool
from acgs_db.tooling.devdb import DevCluster
from acgs_db.writer import AuditWriter

pytestmark = pytest.mark.faults

TENANT = "fault-writer"
# How a batch's first statement begins; a batch of up to STATEMENT_MAX rows is that statement
# alone (its commit included), a larger one continues with a COPY and a COMMIT.
CLAIM = "-- Start of an audit-writer batch"


def _record(n: int) -> ValidationRecord:
    return ValidationRecord(TENANT, f"d{n % 11}", Decimal(n % 100) / 100, {"n": n}, n % 300)


async def _stored(conn: asyncpg.Connection | Pool) -> list[int]:
    rows = await conn.fetch(
        "SELECT (validation_details->>'n')::int FROM constitutional_validations"
        " WHERE tenant_id = $1",
        TENANT,
    )
    return sorted(row[0] for row in rows)


class Producers:
    """Closed-loop producers writing numbered records until stopped; they keep what each
    write() answered."""

    def __init__(self, writer: AuditWriter, count: int) -> None:
        self.acknowledged: set[int] = set()
        self.maybe: dict[int, str] = {}  # record -> its batch id
        self.not_committed: set[int] = set()
        self._stop = asyncio.Event()
        self._tasks = [asyncio.create_task(self._produce(writer, p)) for p in range(count)]

    async def _produce(self, writer: AuditWriter, p: int) -> None:
        n = p * 1_000_000
        while not self._stop.is_set():
            try:
                await writer.write(_record(n))
                self.acknowledged.add(n)
            except AuditWriteError as exc:
                if exc.maybe_committed:
                    self.maybe[n] = exc.batch_id
                else:
                    self.not_committed.add(n)
            n += 1

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)


async def _check_exactly_once(pool: Pool, producers: Producers) -> list[int]:
    stored = await _stored(pool)
    assert len(stored) == len(set(stored)), "a record was stored twice"
    assert producers.acknowledged <= set(stored), "an acknowledged record is missing"
    assert not producers.not_committed & set(stored)
    assert set(stored) - producers.acknowledged <= set(producers.maybe)
    return stored


@pytest.mark.parametrize("moment", ["mid-batch", "commit-not-yet-acknowledged"])
async def test_a_server_killed_under_the_writer_loses_and_duplicates_nothing(moment: str) -> None:
    """32 closed-loop producers on 2 connections; the postmaster is SIGKILLed while batches
    are under way (or once commits are flushed but not acknowledged), then
    restarted. The writer retries
    the interrupted batches with their ledger ids: every producer is answered with an
    acknowledgement, every acknowledged record is stored once, and the batch whose commit had
    been flushed is not written again."""
    async with private_cluster() as cluster:
        pool = await open_pool(cluster, size=6)
        repo = ValidationRepository(pool, SETTINGS)
        admin = await asyncpg.connect(cluster.url())
        async with repo.audit_writer(connections=2, retry_for=60) as writer:
            producers = Producers(writer, 32)
            await until(lambda: len(producers.acknowledged) >= 2000, within=60)
            if moment == "commit-not-yet-acknowledged":
                await hold_commit_acknowledgements(cluster)
                await until(_commits_waiting(admin))
                await asyncio.sleep(0.3)  # the other connection's batch reaches its commit too
                flushed = await _stored(admin)  # committed, not yet acknowledged: visible
            await admin.close()
            before = len(producers.acknowledged)
            await kill_and_restart(cluster)
            if moment == "commit-not-yet-acknowledged":
                await release_commit_acknowledgements(cluster)
            await until(lambda: len(producers.acknowledged) >= before + 2000, within=90)
            await producers.stop()
            status = writer.status
        assert status.retries >= 1
        assert producers.maybe == {}
        assert producers.not_committed == set()
        stored = await _check_exactly_once(pool, producers)
        assert set(stored) == producers.acknowledged
        if moment == "commit-not-yet-acknowledged":
            assert set(flushed) - producers.acknowledged == set()
        await pool.close()
        await assert_no_corruption(cluster)


def _commits_waiting(admin: asyncpg.Connection) -> Callable[[], Awaitable[bool]]:
    async def waiting() -> bool:
        return len(await backends_waiting(admin, "SyncRep", CLAIM)) >= 1

    return waiting


async def _cut_waiting_backend(cluster: DevCluster, wait_event: str, prefix: str) -> None:
    admin = await asyncpg.connect(cluster.url())
    try:
        pid = await the_backend_waiting(admin, wait_event, prefix)
        assert await admin.fetchval("SELECT pg_terminate_backend($1, 10000)", pid)
    finally:
        await admin.close()


async def test_a_connection_cut_before_the_commit_is_retried_on_a_new_one() -> None:
    """pg_terminate_backend() of the writer's backend while its batch waits for the ledger:
    the writer retries on a new connection and every caller is acknowledged, once."""
    async with private_cluster() as cluster:
        pool = await open_pool(cluster, size=4)
        repo = ValidationRepository(pool, SETTINGS)
        locker = await asyncpg.connect(cluster.url())
        async with repo.audit_writer(connections=1) as writer:
            tr = locker.transaction()
            await tr.start()
            await locker.execute("LOCK TABLE ingest_batches IN EXCLUSIVE MODE")
            tasks = [asyncio.create_task(writer.write(_record(n))) for n in range(50)]
            await _cut_waiting_backend(cluster, "Lock", CLAIM)
            await tr.rollback()
            await asyncio.gather(*tasks)
            status = writer.status
        await locker.close()
        assert status.retries >= 1 and status.failed == 0
        assert await _stored(pool) == list(range(50))
        await pool.close()
        await assert_no_corruption(cluster)


async def test_a_connection_cut_after_the_server_committed_writes_nothing_twice() -> None:
    """The writer's backend is terminated while its COMMIT waits to be acknowledged (the
    commit is flushed): the retry with the same batch id finds the batch in the ledger, writes
    nothing, and acknowledges every caller."""
    async with private_cluster() as cluster:
        pool = await open_pool(cluster, size=4)
        repo = ValidationRepository(pool, SETTINGS)
        async with repo.audit_writer(connections=1) as writer:
            await writer.write(_record(0))  # the connection is warm: prepared statements
            await hold_commit_acknowledgements(cluster)
            tasks = [asyncio.create_task(writer.write(_record(n))) for n in range(1, 60)]
            await _cut_waiting_backend(cluster, "SyncRep", CLAIM)
            await release_commit_acknowledgements(cluster)
            await asyncio.gather(*tasks)
            status = writer.status
        assert status.retries >= 1 and status.failed == 0
        assert await _stored(pool) == list(range(60))
        batches = await pool.fetchval("SELECT count(*) FROM ingest_batches")
        assert batches == status.batches  # the retried batch has one ledger row
        await pool.close()
        await assert_no_corruption(cluster)


async def test_an_outage_longer_than_retry_for_fails_the_callers_then_the_writer_serves_on() -> (
    None
):
    """The server is killed and stays down beyond ``retry_for``: the callers of the batches in
    flight get AuditWriteError saying the record may have been committed (the ledger decides),
    others not committed; once the server is back the same writer writes again, and nothing is
    stored twice."""
    async with private_cluster() as cluster:
        pool = await open_pool(cluster, size=4)
        repo = ValidationRepository(pool, SETTINGS)
        async with repo.audit_writer(connections=2, retry_for=1.0) as writer:
            producers = Producers(writer, 16)
            await until(lambda: len(producers.acknowledged) >= 500, within=60)
            await kill(cluster)
            await until(lambda: len(producers.maybe) > 0, within=30)
            await asyncio.to_thread(cluster.start)
            after = len(producers.acknowledged)
            await until(lambda: len(producers.acknowledged) >= after + 500, within=60)
            await producers.stop()
            status = writer.status
        assert status.failed == len(producers.maybe) + len(producers.not_committed) > 0
        stored = set(await _check_exactly_once(pool, producers))
        # Each unsettled record is stored exactly when its batch's ledger row exists.
        ledger = {
            row[0]
            for row in await pool.fetch(
                "SELECT batch_id FROM ingest_batches WHERE batch_id = ANY($1::text[])",
                list(set(producers.maybe.values())),
            )
        }
        for n, batch in producers.maybe.items():
            assert (n in stored) == (batch in ledger), (n, batch)
        await pool.close()
        await assert_no_corruption(cluster)
