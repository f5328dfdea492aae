"""Helpers of the fault tests (tests/test_faults.py).

* :func:`private_cluster`: a throwaway PostgreSQL cluster of the test's own, migrated to head,
  destroyed afterwards, so that killing it never disturbs the session's server.
* :func:`assert_no_corruption`: PostgreSQL's ``pg_amcheck`` over every table and B-tree index
  of the audit store (partitions, rollup, ledger, cache, view).
* :class:`PausingStream`: records streamed into a COPY that stop half-way until resumed, so that
  a fault lands while the COPY is under way.
* :func:`hold_commit_acknowledgements`: synchronous replication to a standby that never
  connects. A commit (or PREPARE TRANSACTION, or COMMIT PREPARED) is then durable on the server
  but never acknowledged: the window in which a fault leaves the client unsure of the outcome,
  held open for as long as the test needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from decimal import Decimal
from typing import Unpack

import asyncpg
from conftest import start_throwaway_cluster

from acgs_db.pool import Pool, PoolOptions, create_pool
from acgs_db.records import ValidationRecord
from acgs_db.settings import Settings
from acgs_db.tooling import schema
from acgs_db.tooling.devdb import DevCluster

SETTINGS = Settings.from_env({})
ABSENT_STANDBY = "acgs_fault_absent_standby"
_PROBE = "SELECT pg_logical_emit_message(true, 'acgs_fault_probe', '')"

# Every relation of the audit store's schema that amcheck can verify: tables, partitions and
# materialized views (heap, TOAST included), and B-tree indexes.
CHECKABLE_RELATIONS = """
SELECT n.nspname || '.' || c.relname
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_am a ON a.oid = c.relam
WHERE n.nspname = current_schema()
  AND (c.relkind IN ('r', 'm') OR (c.relkind = 'i' AND a.amname = 'btree'))
"""
_CHECKED = re.compile(r'checking (?:heap table|btree index) "[^".]+\.([^"]+)"')


# -- a private cluster ----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def private_cluster() -> AsyncIterator[DevCluster]:
    """A cluster of this test alone, its ``acgs`` database migrated to head."""
    cluster = await asyncio.to_thread(start_throwaway_cluster)
    try:
        await asyncio.to_thread(schema.upgrade, cluster.url())
        yield cluster
    finally:
        await asyncio.to_thread(cluster.destroy)
        shutil.rmtree(cluster.root.parent, ignore_errors=True)


async def open_pool(cluster: DevCluster, size: int = 4, **options: Unpack[PoolOptions]) -> Pool:
    """The repository's own pool (codecs, timeouts) on the cluster's database."""
    sized: PoolOptions = {"min_size": 1, "max_size": size}
    sized.update(options)
    return await create_pool(cluster.url(), settings=SETTINGS, **sized)


async def kill(cluster: DevCluster) -> None:
    """SIGKILL the postmaster and wait until neither it nor its orphaned backends remain."""
    await asyncio.to_thread(cluster.kill)
    # kill() returns once the backends are gone, but the postmaster's pid lingers until init
    # reaps it (about a second here), and start() would take it for a running server.
    await until(lambda: not cluster.is_running())


async def kill_and_restart(cluster: DevCluster) -> None:
    """SIGKILL the postmaster, then start it again: crash recovery replays the WAL."""
    await kill(cluster)
    await asyncio.to_thread(cluster.start)


async def until(
    condition: Callable[[], Awaitable[bool]] | Callable[[], bool], within: float = 20.0
) -> None:
    """Wait until ``condition`` (sync or async) holds; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if not isinstance(value, bool):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(0.02)


async def backends_waiting(
    conn: asyncpg.Connection, wait_event: str, query_prefix: str
) -> list[int]:
    """Backends of this database whose statement starts with ``query_prefix`` and that wait on
    ``wait_event`` (an event such as ``SyncRep`` or ``ClientRead``, or a type such as ``Lock``)."""
    rows = await conn.fetch(
        "SELECT pid FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        "   AND $1 IN (wait_event, wait_event_type) AND query LIKE $2 || '%'",
        wait_event,
        query_prefix,
    )
    return [row["pid"] for row in rows]


async def the_backend_waiting(
    conn: asyncpg.Connection, wait_event: str, query_prefix: str, within: float = 20.0
) -> int:
    """The one backend running ``query_prefix...`` that waits on ``wait_event``, once it does."""
    found: list[int] = []

    async def waiting() -> bool:
        found[:] = await backends_waiting(conn, wait_event, query_prefix)
        return len(found) == 1

    await until(waiting, within)
    return found[0]


async def copies_under_way(
    conn: asyncpg.Connection, backends: int = 1, within: float = 20.0
) -> list[int]:
    """Wait until ``backends`` COPY FROM statements of this database have stored rows already
    (``pg_stat_progress_copy``: the rows are in the table's heap and indexes, uncommitted);
    return their pids."""
    found: list[int] = []

    async def under_way() -> bool:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_progress_copy"
            " WHERE datname = current_database() AND command = 'COPY FROM'"
            "   AND tuples_processed > 0"
        )
        found[:] = [row["pid"] for row in rows]
        return len(found) == backends

    await until(under_way, within)
    return found


# -- integrity ------------------------------------------------------------------------------


def _pg_amcheck(cluster: DevCluster, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(cluster.bindir / "pg_amcheck"),
            "--install-missing",
            "--heapallindexed",  # every heap tuple has its index entry
            "--rootdescend",  # implies --parent-check: parent/child keys, sibling links
            *extra,
            cluster.url(),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


async def assert_no_corruption(cluster: DevCluster) -> None:
    """pg_amcheck finds nothing wrong, and it did check every table and B-tree index of the
    audit store (partitions and their indexes, rollup, delta, ledger, cache, view)."""
    result = await asyncio.to_thread(_pg_amcheck, cluster)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")

    verbose = await asyncio.to_thread(_pg_amcheck, cluster, "--verbose")
    assert verbose.returncode == 0, verbose.stderr
    checked = set(_CHECKED.findall(verbose.stderr + verbose.stdout))
    conn = await asyncpg.connect(cluster.url())
    try:
        expected = {row[0] for row in await conn.fetch(CHECKABLE_RELATIONS)}
    finally:
        await conn.close()
    assert {"public.validation_rollup", "public.validation_rollup_delta"} <= expected
    assert any(name.endswith("_default_pkey") for name in expected)  # a partition's index
    assert expected <= checked, sorted(expected - checked)


# -- records --------------------------------------------------------------------------------


_RULES = [f"rule-{n}" for n in range(12)]  # some bulk: a COPY sends rows in 512 KiB messages


def batch_records(batch: int, rows: int) -> list[ValidationRecord]:
    """The records of batch ``batch``: a tenant of their own, each row numbered in its details."""
    return [
        ValidationRecord(
            f"fault-{batch}",
            f"d-{row % 50}",
            Decimal(row % 101) / 100,
            {"batch": batch, "row": row, "rules": _RULES},
            row % 1000,
        )
        for row in range(rows)
    ]


async def stored_rows(conn: asyncpg.Connection | Pool, batch: int) -> int:
    """Distinct rows of batch ``batch`` stored (a row stored twice would count once and make
    the total disagree with :func:`stored_count`)."""
    return int(
        await conn.fetchval(
            "SELECT count(DISTINCT validation_details->>'row') FROM constitutional_validations"
            " WHERE tenant_id = $1",
            f"fault-{batch}",
        )
    )


async def stored_count(conn: asyncpg.Connection | Pool, batch: int) -> int:
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM constitutional_validations WHERE tenant_id = $1",
            f"fault-{batch}",
        )
    )


async def ledger_rows(conn: asyncpg.Connection | Pool, batch_id: str) -> int | None:
    """Rows the ledger records for ``batch_id``; None when the batch was never committed."""
    value = await conn.fetchval("SELECT rows FROM ingest_batches WHERE batch_id = $1", batch_id)
    return None if value is None else int(value)


class PausingStream:
    """An async stream of records that stops after ``pause_after`` of them until
    :meth:`resume`; ``paused`` is set when it stops. A COPY fed by it is then under way on the
    server (the COPY has begun and rows are on the wire) for as long as the test likes."""

    def __init__(self, records: Sequence[ValidationRecord], pause_after: int) -> None:
        self._records = records
        self._pause_after = pause_after
        self.paused = asyncio.Event()
        self._resumed = asyncio.Event()

    def resume(self) -> None:
        self._resumed.set()

    async def __aiter__(self) -> AsyncIterator[ValidationRecord]:
        for index, record in enumerate(self._records):
            if index == self._pause_after:
                self.paused.set()
                await self._resumed.wait()
            yield record


# -- commits that are durable but not acknowledged ------------------------------------------


async def hold_commit_acknowledgements(cluster: DevCluster) -> None:
    """From now on every commit waits for a synchronous standby that does not exist: it is
    written and flushed (it survives a crash) but its acknowledgement never comes, until
    :func:`release_commit_acknowledgements`. ``ALTER SYSTEM`` persists across restarts."""
    admin = await asyncpg.connect(cluster.url())
    probe = await asyncpg.connect(cluster.url())
    try:
        await admin.execute(f"ALTER SYSTEM SET synchronous_standby_names = '{ABSENT_STANDBY}'")
        await admin.execute("SELECT pg_reload_conf()")
        # The checkpointer applies the setting on reload; probe until a commit really waits
        # (a transactional WAL message gives the probe's commit a record to wait for).
        deadline = time.monotonic() + 20
        while True:
            try:
                await asyncio.wait_for(probe.fetchval(_PROBE), timeout=0.3)
            except TimeoutError:
                return
            if time.monotonic() > deadline:
                raise AssertionError("synchronous replication never took effect")
            await asyncio.sleep(0.05)
    finally:
        probe.terminate()
        await admin.close()


async def release_commit_acknowledgements(cluster: DevCluster) -> None:
    """Back to ordinary commits; commits still waiting are acknowledged at once."""
    admin = await asyncpg.connect(cluster.url())
    try:
        await admin.execute("ALTER SYSTEM RESET synchronous_standby_names")
        await admin.execute("SELECT pg_reload_conf()")
    finally:
        await admin.close()
