"""A bulk insert cancelled at any await: every connection goes back to the pool, no prepared
transaction outlives the shielded ending, no session stays idle in a transaction, and the batch
is stored whole or not at all, as its ledger row says.

The database is real; the cancellation is injected by wrapping asyncpg's Connection methods
(``execute``, ``fetch*``, ``copy_records_to_table``): the Nth call cancels the bulk insert's task,
either right before the statement is sent or while it is in flight on the server. Calls made by
the shielded ending (COMMIT PREPARED) count too: the caller is then cancelled while they run.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from decimal import Decimal
from typing import Any, TypedDict

import pytest
from asyncpg.connection import Connection
from faults_support import until

from acgs_db import ValidationRecord, ValidationRepository
from acgs_db.pool import Pool, create_pool
from acgs_db.settings import Settings

ROWS = 6_000
POOL_SIZE = 3
METHODS = ("execute", "fetch", "fetchrow", "fetchval", "copy_records_to_table")


class _Options(TypedDict, total=False):
    """bulk_insert's keywords of a path, besides batch_id."""

    commit_every: int
    connections: int


# Each path: whether it records a batch_id, and its other keywords.
PATHS: dict[str, tuple[bool, _Options]] = {
    "single": (True, {}),
    "commit_every": (False, {"commit_every": 2_000}),
    "two-phase": (True, {"connections": 2}),
}


class Canceller:
    """Counts the Connection calls made while ``target`` runs; the ``at``-th cancels it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.target: asyncio.Future[int] | None = None
        self.at = 0
        self.in_flight = True
        self.calls: list[str] = []
        for name in METHODS:
            monkeypatch.setattr(Connection, name, self._wrap(name, getattr(Connection, name)))

    def _wrap(self, name: str, original: Callable[..., Awaitable[Any]]) -> Any:
        async def wrapper(conn: Connection, *args: Any, **kwargs: Any) -> Any:
            target = self.target
            if target is not None and not target.done():
                self.calls.append(f"{name} {str(args[0])[:40] if args else ''}")
                if len(self.calls) == self.at:
                    target.cancel()
                    if not self.in_flight:
                        await asyncio.sleep(0)  # in the target: cancelled before sending
            return await original(conn, *args, **kwargs)

        return wrapper

    async def run(self, work: Awaitable[int], at: int = 0, in_flight: bool = True) -> int | None:
        """Run ``work``, cancelled at the ``at``-th call (0: never); None when cancelled."""
        self.calls, self.at, self.in_flight = [], at, in_flight
        self.target = asyncio.ensure_future(work)
        try:
            return await self.target
        except asyncio.CancelledError:
            assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
            return None
        finally:
            self.target = None


def _records(tenant: str) -> list[ValidationRecord]:
    return [
        ValidationRecord(tenant, f"d{i % 7}", Decimal(i % 100) / 100, {"i": i}, i % 500)
        for i in range(ROWS)
    ]


@pytest.fixture
async def small_pool(database_url: str) -> AsyncIterator[Pool]:
    pool = await create_pool(database_url, min_size=1, max_size=POOL_SIZE)
    yield pool
    await asyncio.wait_for(pool.close(), timeout=30)


async def _all_connections_back(pool: Pool) -> None:
    """Every slot of the pool can be taken at once, right away."""
    held = await asyncio.wait_for(
        asyncio.gather(*(asyncio.ensure_future(pool.acquire()) for _ in range(POOL_SIZE))), 5
    )
    for conn in held:
        assert not conn.is_in_transaction()
        await pool.release(conn)


async def _assert_settled(
    pool: Pool, tenant: str, batch: str | None, commit_every: int | None
) -> int:
    """The invariants after a cancelled (or finished) bulk insert; returns the rows stored."""
    await _all_connections_back(pool)

    async def no_prepared() -> bool:
        return not await pool.fetchval(
            "SELECT count(*) FROM pg_prepared_xacts"
            " WHERE left(gid, 8) = 'acgs_db:' AND database = current_database()"
        )

    await until(no_prepared, within=10)
    idle_in_transaction = await pool.fetchval(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND state LIKE 'idle in transaction%'"
    )
    assert idle_in_transaction == 0
    stored = int(
        await pool.fetchval(
            "SELECT count(*) FROM constitutional_validations WHERE tenant_id = $1", tenant
        )
    )
    if batch is not None:
        ledger = await pool.fetchval("SELECT rows FROM ingest_batches WHERE batch_id = $1", batch)
        assert (stored, ledger) in [(0, None), (ROWS, ROWS)]
    else:
        assert commit_every is not None
        assert stored % commit_every == 0  # whole chunks only
    return stored


async def _calls(canceller: Canceller, repo: ValidationRepository, path: str) -> int:
    """How many Connection calls an uncancelled bulk insert of ``path`` makes."""
    tenant = f"count-{path}"
    has_batch, options = PATHS[path]
    batch = f"count-{path}-{id(canceller)}" if has_batch else None
    assert (
        await canceller.run(repo.bulk_insert(_records(tenant), batch_id=batch, **options)) == ROWS
    )
    return len(canceller.calls)


def _cases() -> Iterator[Any]:
    for path in PATHS:
        for in_flight in (True, False):
            yield pytest.param(
                path, in_flight, id=f"{path}-{'in-flight' if in_flight else 'before'}"
            )


@pytest.mark.parametrize(("path", "in_flight"), list(_cases()))
async def test_a_bulk_insert_cancelled_at_each_await_settles(
    small_pool: Pool,
    monkeypatch: pytest.MonkeyPatch,
    tenant: str,
    path: str,
    in_flight: bool,
) -> None:
    repo = ValidationRepository(small_pool, Settings.from_env({}))
    canceller = Canceller(monkeypatch)
    total = await _calls(canceller, repo, path)
    assert total >= 4
    has_batch, options = PATHS[path]
    commit_every = options.get("commit_every")
    outcomes = set()
    for at in range(1, total + 1):
        who = f"{tenant}-{at}"
        batch = f"cancel-{who}" if has_batch else None
        records = _records(who)
        result = await canceller.run(
            repo.bulk_insert(records, batch_id=batch, **options), at, in_flight
        )
        where = canceller.calls[at - 1] if at <= len(canceller.calls) else "?"
        assert result is None, f"call {at} ({where}) did not cancel the insert"
        stored = await _assert_settled(small_pool, who, batch, commit_every)
        outcomes.add(stored == ROWS)
        if batch is not None:  # the retry completes the batch, or finds it complete
            again = await repo.bulk_insert(records, batch_id=batch, **options)
            assert again == ROWS - stored
            assert await _assert_settled(small_pool, who, batch, commit_every) == ROWS
    if path == "two-phase":
        assert outcomes == {False, True}  # cancelled before and after the decision


class CancellingStream:
    """Records that cancel the consuming task after ``at`` of them (mid-COPY)."""

    def __init__(self, records: list[ValidationRecord], at: int) -> None:
        self._records = records
        self._at = at
        self.task: asyncio.Task[Any] | None = None

    async def __aiter__(self) -> AsyncIterator[ValidationRecord]:
        for index, record in enumerate(self._records):
            if index == self._at and self.task is not None:
                self.task.cancel()
                await asyncio.sleep(0)
            yield record


@pytest.mark.parametrize("path", list(PATHS))
async def test_a_bulk_insert_cancelled_mid_copy_settles(
    small_pool: Pool, tenant: str, path: str
) -> None:
    repo = ValidationRepository(small_pool, Settings.from_env({}))
    has_batch, options = PATHS[path]
    batch = f"mid-{tenant}" if has_batch else None
    stream = CancellingStream(_records(tenant), 4_500)
    task = asyncio.ensure_future(repo.bulk_insert(stream, batch_id=batch, **options))
    stream.task = task
    with pytest.raises(asyncio.CancelledError):
        await task
    stored = await _assert_settled(small_pool, tenant, batch, options.get("commit_every"))
    assert stored == (4_000 if path == "commit_every" else 0)


@pytest.mark.parametrize("path", ["single", "two-phase"])
async def test_a_retry_of_a_committed_batch_cancelled_at_each_await_settles(
    small_pool: Pool, monkeypatch: pytest.MonkeyPatch, tenant: str, path: str
) -> None:
    """The retry claims, finds the batch committed, reads its digest and hands the connections
    back (shielded, for two-phase) before digesting the records: cancelled at each of those."""
    repo = ValidationRepository(small_pool, Settings.from_env({}))
    _, options = PATHS[path]
    batch = f"retry-{tenant}"
    records = _records(tenant)
    assert await repo.bulk_insert(records, batch_id=batch, **options) == ROWS
    canceller = Canceller(monkeypatch)
    assert await canceller.run(repo.bulk_insert(records, batch_id=batch, **options)) == 0
    total = len(canceller.calls)
    assert total >= 3
    for at in range(1, total + 1):
        for in_flight in (True, False):
            result = await canceller.run(
                repo.bulk_insert(records, batch_id=batch, **options), at, in_flight
            )
            assert result is None, f"call {at} ({canceller.calls[at - 1]}) did not cancel"
            assert await _assert_settled(small_pool, tenant, batch, None) == ROWS
