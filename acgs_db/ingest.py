"""Bulk ingest: binary COPY streams, idempotent batches, and COPY over several connections.

One call of :meth:`Ingest.copy` is one transaction and one COPY fed by a generator that checks
each record right before its row is sent, so memory stays flat and a bad record aborts the
COPY (nothing of the call is written). Variants:

* ``batch_id``: the batch is recorded in ``ingest_batches`` in the same transaction, with the
  SHA-256 of its rows (:mod:`acgs_db.digest`, computed as the rows stream). A retry of a batch
  that did commit writes nothing: it checks and digests the records (no COPY) and returns 0
  when they are the rows committed, or raises :class:`BatchConflictError` when they are not.
* ``commit_every``: a transaction per N rows, for endless streams.
* ``connections=N``: the stream is dealt in chunks to N connections, each in its own
  transaction; all are prepared (``PREPARE TRANSACTION``), then committed, part 0 first. Part 0
  holds the batch's ledger row: once it is committed the batch is decided, and
  :meth:`Ingest.recover` finishes a batch whose coordinator died between the commits (or rolls
  back one that was never decided). Durability is all or nothing; visibility is not atomic: for
  the milliseconds between the COMMIT PREPAREDs a reader can see some parts and not others.

Cancellation: a task cancelled at any await of a bulk insert gives every connection back to the
pool. The end of a multi-connection insert (the rollback of an undecided batch, the commits of a
decided one, the release of the connections) runs as a task of its own, shielded from the
caller's cancellation, which is re-raised once it is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
)
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg

from acgs_db.constants import VALIDATIONS_TABLE
from acgs_db.digest import BatchDigest
from acgs_db.errors import (
    BatchConflictError,
    BulkInsertError,
    ConfigurationError,
    InvalidRecordError,
)
from acgs_db.pooler import MULTI_CONNECTION_COPY
from acgs_db.records import COPY_COLUMNS, Limits, ValidationRecord, check_text, row_checker
from acgs_db.resources import load_sql
from acgs_db.timeouts import milliseconds, set_statement_timeout

if TYPE_CHECKING:
    from acgs_db.pool import Pool, PooledConnection

Records = Iterable[ValidationRecord] | AsyncIterable[ValidationRecord]
Row = tuple[Any, ...]
T = TypeVar("T")

BATCH_ID_MAX = 200
STAGE_TABLE = "acgs_ingest_stage"
_NO_LIMIT = 10 * 365 * 86400.0  # asyncpg has no public "no timeout"; ten years will do
_GID = re.compile(r"^acgs_db:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}:\d{1,3}$")
_SERVER_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,  # a connection used while it reads the server's last words
    OSError,
)


def _one(row: asyncpg.Record | None) -> asyncpg.Record:
    """The row of a statement that always returns exactly one."""
    assert row is not None
    return row


def _gid_statement(verb: str, gid: str) -> str:
    """``PREPARE TRANSACTION`` and ``COMMIT/ROLLBACK PREPARED`` take no bind parameters; the
    gid is always one this module made (checked against its exact shape), never input."""
    if verb not in {"PREPARE TRANSACTION", "COMMIT PREPARED", "ROLLBACK PREPARED"}:
        raise ValueError(verb)
    if not _GID.match(gid):
        raise ValueError(f"not an acgs_db gid: {gid!r}")
    return f"{verb} '{gid}'"


def _gid(token: uuid.UUID, part: int) -> str:
    return f"acgs_db:{token}:{part}"


Numbered = Iterator[tuple[int, ValidationRecord]] | AsyncIterator[tuple[int, ValidationRecord]]


def _numbered(records: Records) -> Numbered:
    """Records with their positions; a plain iterable stays synchronous (cheaper per row)."""
    if isinstance(records, AsyncIterable):
        return _anumbered(records)
    return enumerate(records)


async def _anumbered(
    records: AsyncIterable[ValidationRecord],
) -> AsyncIterator[tuple[int, ValidationRecord]]:
    index = 0
    async for record in records:
        yield index, record
        index += 1


async def _each(numbered: Numbered) -> AsyncIterator[tuple[int, ValidationRecord]]:
    """Either kind of numbered records, as an async iterator."""
    if isinstance(numbered, AsyncIterator):
        async for item in numbered:
            yield item
    else:
        for item in numbered:
            yield item


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What :meth:`Ingest.recover` did with left-over prepared transactions."""

    committed: list[str]
    rolled_back: list[str]


@dataclass(frozen=True, slots=True)
class _Committed:
    """A claim found its batch committed before: the stored digest and the transaction time."""

    digest: bytes | None
    now: datetime


class Ingest:
    """The COPY machinery behind :meth:`ValidationRepository.bulk_insert`."""

    def __init__(
        self,
        pool: Pool,
        limits: Limits,
        copy_timeout: float | None,
        *,
        pooler: str = "none",
    ) -> None:
        self._pool = pool
        self._limits = limits
        self._timeout = copy_timeout or _NO_LIMIT
        self._pooler = pooler
        # Endings still running after their caller was cancelled (a strong reference each).
        self._settling: set[asyncio.Future[Any]] = set()

    async def copy(
        self,
        records: Records,
        *,
        batch_id: str | None = None,
        commit_every: int | None = None,
        connections: int = 1,
        chunk_rows: int = 5000,
        tenant: str | None = None,
    ) -> int:
        """Write ``records``; return the rows written (0 for a batch already committed with
        the same rows; :class:`BatchConflictError` if it was committed with other rows).

        ``tenant``: the tenant a tenant login is bound to (row-level security enforces it on
        the server); a record of another tenant is refused like any bad record, naming it."""
        if batch_id is not None:
            check_text("batch_id", batch_id, BATCH_ID_MAX)
        if commit_every is not None:
            if commit_every <= 0:
                raise ValueError("commit_every must be a positive number of rows")
            if batch_id is not None or connections != 1:
                raise ValueError("commit_every cannot be combined with batch_id or connections")
        if connections < 1:
            raise ValueError("connections must be at least 1")
        if connections > 1 and self._pooler == "transaction":
            raise ConfigurationError(MULTI_CONNECTION_COPY)
        numbered = _numbered(records)
        if connections > 1:
            done = await self._copy_prepared(numbered, batch_id, connections, chunk_rows, tenant)
        else:
            async with self._pool.acquire() as conn:
                if commit_every is None:
                    done = await self._copy_transaction(
                        conn, numbered, batch_id=batch_id, tenant=tenant
                    )
                else:
                    total = 0
                    while True:
                        written = await self._copy_transaction(
                            conn, numbered, limit=commit_every, committed=total, tenant=tenant
                        )
                        assert isinstance(written, int)  # no batch id: never _Committed
                        total += written
                        if written < commit_every:
                            return total
        if isinstance(done, _Committed):
            assert batch_id is not None
            await self._verify_retry(numbered, batch_id, done, tenant)
            return 0
        return done

    def _checker(
        self, now: datetime, tenant: str | None, committed: int, digest: BatchDigest | None = None
    ) -> Callable[[int, ValidationRecord], Row]:
        """Check a numbered record into a COPY row (errors name its index); with ``digest``,
        the row is added to it before it is returned (that is, before it is sent)."""
        check_row = row_checker(self._limits, now)

        def check(index: int, record: ValidationRecord) -> Row:
            try:
                row = check_row(record)
            except InvalidRecordError as exc:
                raise exc.at(index, committed) from None
            if tenant is not None and row[0] != tenant:
                raise InvalidRecordError(
                    "tenant_id",
                    f"this login is bound to tenant {tenant!r}; it writes that tenant only",
                    index,
                    committed,
                )
            if digest is not None:
                digest.add(row, record[5] is not None)
            return row

        return check

    async def _verify_retry(
        self, numbered: Numbered, batch_id: str, committed: _Committed, tenant: str | None
    ) -> None:
        """A retry of a committed batch: check and digest the records (no COPY) and raise
        :class:`BatchConflictError` unless they are the committed rows. A ledger row without
        a digest (written before migration 0009) counts as the same rows."""
        digest = BatchDigest()
        check = self._checker(committed.now, tenant, 0, digest)
        if isinstance(numbered, AsyncIterator):
            async for index, record in numbered:
                check(index, record)
        else:
            for index, record in numbered:
                check(index, record)
        if committed.digest is not None and digest.digest() != committed.digest:
            raise BatchConflictError(batch_id)

    @staticmethod
    def _rows(
        numbered: Numbered,
        check: Callable[[int, ValidationRecord], Row],
        counter: list[int],
        limit: int | None = None,
    ) -> Iterator[Row] | AsyncIterator[Row]:
        """COPY rows of the records, each checked right before asyncpg sends it; counts into
        ``counter[0]`` as asyncpg takes them."""
        if isinstance(numbered, AsyncIterator):
            source = numbered

            async def arows() -> AsyncIterator[Row]:
                async for index, record in source:
                    yield check(index, record)
                    counter[0] += 1
                    if limit is not None and counter[0] >= limit:
                        return

            return arows()

        def rows() -> Iterator[Row]:
            for index, record in numbered:
                yield check(index, record)
                counter[0] += 1
                if limit is not None and counter[0] >= limit:
                    return

        return rows()

    async def _copy_transaction(
        self,
        conn: PooledConnection,
        numbered: Numbered,
        *,
        limit: int | None = None,
        committed: int = 0,
        batch_id: str | None = None,
        tenant: str | None = None,
    ) -> int | _Committed:
        counter = [0]
        digest = BatchDigest() if batch_id is not None else None
        try:
            async with conn.transaction():
                now, staged, _ = _one(
                    await conn.fetchrow(load_sql("queries/copy_start"), milliseconds(self._timeout))
                )
                if batch_id is not None:
                    claimed = await conn.fetchval(
                        load_sql("queries/batch_claim"), batch_id, 1, None
                    )
                    if claimed is None:
                        stored = await conn.fetchval(load_sql("queries/batch_digest"), batch_id)
                        return _Committed(stored, now)
                check = self._checker(now, tenant, committed, digest)
                rows = self._rows(numbered, check, counter, limit)
                await self._copy_into(conn, rows, staged=staged)
                if batch_id is not None:
                    assert digest is not None
                    await conn.execute(
                        load_sql("queries/batch_count"), batch_id, counter[0], digest.digest()
                    )
        except _SERVER_ERRORS as exc:
            raise BulkInsertError(f"bulk insert failed: {exc}", committed) from exc
        return counter[0]

    async def _copy_into(
        self, conn: PooledConnection, rows: Iterable[Row] | AsyncIterator[Row], *, staged: bool
    ) -> None:
        """COPY the rows into the table, or, when row-level security applies to this role
        (PostgreSQL refuses COPY FROM then), into the session's staging table and from there
        into the table with one INSERT that the policies check."""
        if not staged:
            await conn.copy_records_to_table(
                VALIDATIONS_TABLE, records=rows, columns=COPY_COLUMNS, timeout=self._timeout
            )
            return
        await conn.execute(load_sql("queries/stage_create"))
        await conn.copy_records_to_table(
            STAGE_TABLE, records=rows, columns=COPY_COLUMNS, timeout=self._timeout
        )
        await conn.execute(load_sql("queries/stage_flush"), timeout=self._timeout)

    # -- several connections, two-phase commit ------------------------------------------------

    async def _settle(self, work: Coroutine[Any, Any, T]) -> T:
        """Run ``work`` to its end even if the caller is cancelled meanwhile: as a task of its
        own, shielded. A cancelled caller waits for it (unless cancelled once more: the task
        then goes on alone) and gets its CancelledError afterwards."""
        task = asyncio.ensure_future(work)
        self._settling.add(task)
        task.add_done_callback(self._settled)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.done():
                await asyncio.wait([task])
            raise

    def _settled(self, task: asyncio.Future[Any]) -> None:
        self._settling.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a cancelled caller no longer awaits it

    async def _copy_prepared(
        self,
        numbered: Numbered,
        batch_id: str | None,
        connections: int,
        chunk_rows: int,
        tenant: str | None,
    ) -> int | _Committed:
        token = uuid.uuid4()
        batch = batch_id or str(token)
        digest = BatchDigest() if batch_id is not None else None
        conns: list[PooledConnection] = []
        # Gids whose PREPARE TRANSACTION was sent: a cancelled or failed one may have been
        # prepared all the same, so an abandoned batch rolls back every one of them.
        prepared: list[str] = []
        try:
            for _ in range(connections):
                conns.append(await self._pool.acquire())
            capacity = await conns[0].fetchval(load_sql("queries/max_prepared_transactions"))
            if capacity < connections:
                raise ConfigurationError(
                    f"a bulk insert over {connections} connections needs "
                    f"max_prepared_transactions >= {connections} (the server has {capacity})"
                )
            for part, conn in enumerate(conns):
                await conn.execute("BEGIN")
                if part:  # part 0's bound comes with copy_start
                    await set_statement_timeout(conn, self._timeout)
            now, staged, _ = _one(
                await conns[0].fetchrow(load_sql("queries/copy_start"), milliseconds(self._timeout))
            )
            if staged:
                raise ConfigurationError(
                    "a bulk insert over several connections needs a role that row-level "
                    "security does not apply to (the tables' owner, or a login with "
                    "BYPASSRLS): staging goes through temporary tables, which two-phase "
                    "commit cannot prepare"
                )
            claimed = await conns[0].fetchval(
                load_sql("queries/batch_claim"), batch, connections, token
            )
            if claimed is None:  # this batch was committed before: nothing to write
                stored = await conns[0].fetchval(load_sql("queries/batch_digest"), batch)
                committed = _Committed(stored, now)
            else:
                committed = None
                total = await self._deal(numbered, conns, now, chunk_rows, tenant, digest)
                await conns[0].execute(
                    load_sql("queries/batch_count"),
                    batch,
                    total,
                    None if digest is None else digest.digest(),
                )
                for part, conn in enumerate(conns):
                    prepared.append(_gid(token, part))
                    await conn.execute(_gid_statement("PREPARE TRANSACTION", prepared[-1]))
        except _SERVER_ERRORS as exc:
            await self._settle(self._abandon(conns, prepared))
            raise BulkInsertError(
                f"bulk insert over {connections} connections failed: {exc}"
            ) from exc
        except BaseException:
            await self._settle(self._abandon(conns, prepared))
            raise
        # Out of the try: the connections are handed back exactly once, cancelled or not.
        if committed is not None:
            await self._settle(self._abandon(conns, []))
            return committed
        return await self._settle(self._finish(conns, prepared, token, batch, total))

    async def _finish(
        self,
        conns: list[PooledConnection],
        prepared: list[str],
        token: uuid.UUID,
        batch: str,
        total: int,
    ) -> int:
        """Commit a prepared batch, part 0 first, and hand the connections back."""
        # Committing part 0 decides the batch: from then on, the others are only ever committed
        # (here, or by recover() if this process dies or loses the server now).
        try:
            await conns[0].execute(_gid_statement("COMMIT PREPARED", prepared[0]))
        except _SERVER_ERRORS as exc:
            # Part 0 may have committed all the same (a connection lost, or a timeout, after
            # the server wrote the commit): never roll the other parts back blindly. Settle the
            # batch as recover() does, by part 0 and the ledger; whatever cannot be settled now
            # stays prepared for recover().
            await self._abandon(conns, [])
            with contextlib.suppress(*_SERVER_ERRORS):
                await self.recover(timedelta(0), token=token)
            raise BulkInsertError(
                f"bulk insert over {len(conns)} connections failed: {exc!r}; the batch is "
                "stored whole or not at all (its ledger row says which)"
            ) from exc
        left = prepared[1:]
        for gid in prepared[1:]:
            with contextlib.suppress(*_SERVER_ERRORS):
                await conns[0].execute(_gid_statement("COMMIT PREPARED", gid))
                left.remove(gid)
        await self._abandon(conns, [])
        if left:
            raise BulkInsertError(
                f"batch {batch} is decided but {len(left)} of its parts could not be committed "
                "yet; `acgs-db recover` (Ingest.recover) commits them",
                committed=total,
            )
        return total

    async def _deal(
        self,
        numbered: Numbered,
        conns: list[PooledConnection],
        now: datetime,
        chunk_rows: int,
        tenant: str | None,
        digest: BatchDigest | None,
    ) -> int:
        """Check records and deal them in chunks to one COPY per connection."""
        queues: list[asyncio.Queue[list[Row] | None]] = [asyncio.Queue(maxsize=2) for _ in conns]
        check = self._checker(now, tenant, 0, digest)

        async def feed() -> int:
            count = 0
            chunk: list[Row] = []
            turn = 0
            async for index, record in _each(numbered):
                chunk.append(check(index, record))
                if len(chunk) >= chunk_rows:
                    await queues[turn].put(chunk)
                    count += len(chunk)
                    chunk, turn = [], (turn + 1) % len(queues)
            if chunk:
                await queues[turn].put(chunk)
                count += len(chunk)
            for queue in queues:
                await queue.put(None)
            return count

        async def drain(queue: asyncio.Queue[list[Row] | None]) -> AsyncIterator[Row]:
            while (chunk := await queue.get()) is not None:
                for row in chunk:
                    yield row

        try:
            async with asyncio.TaskGroup() as group:
                fed = group.create_task(feed())
                for conn, queue in zip(conns, queues, strict=True):
                    group.create_task(self._copy_into(conn, drain(queue), staged=False))
        except BaseExceptionGroup as group_error:
            # The first cause matters (a bad record, a server error); the rest are its echoes.
            bad = group_error.subgroup(InvalidRecordError)
            raise (bad or group_error).exceptions[0] from None
        return fed.result()

    async def _abandon(self, conns: list[PooledConnection], prepared: list[str]) -> None:
        """Roll back each connection's open transaction and then the given prepared parts
        (an undecided batch); hand every connection back (terminating those left in an
        unknown state).

        The ROLLBACK is sent whatever the connection's state: asyncpg sends it only once a
        cancelled statement has ended on the server, so a PREPARE TRANSACTION cut short by a
        cancellation has then either taken effect (and is rolled back below) or not."""
        usable: list[PooledConnection] = []
        for conn in conns:
            try:
                await conn.execute("ROLLBACK")  # outside a transaction: a warning, dropped
                usable.append(conn)
            except _SERVER_ERRORS:
                with contextlib.suppress(asyncpg.InterfaceError):  # lost: already released
                    conn.terminate()
        rollback = [_gid_statement("ROLLBACK PREPARED", gid) for gid in prepared]
        if usable:
            for statement in rollback:
                with contextlib.suppress(*_SERVER_ERRORS):
                    await usable[0].execute(statement)
            rollback = []
        for conn in conns:
            # A connection lost with the server fails its reset on release; the pool has then
            # terminated it and opens a new one on the next acquire.
            with contextlib.suppress(*_SERVER_ERRORS):
                await self._pool.release(conn)
        for statement in rollback:  # every connection was lost: through a new one
            with contextlib.suppress(*_SERVER_ERRORS):
                await self._pool.execute(statement)

    async def recover(
        self, older_than: timedelta = timedelta(minutes=1), *, token: uuid.UUID | None = None
    ) -> RecoveryReport:
        """Finish multi-connection batches whose coordinator died between PREPARE and COMMIT.

        A batch whose ledger row (part 0) is committed was decided: its other parts are
        committed. An undecided batch is rolled back, part 0 first, so that a coordinator still
        at work cannot commit it afterwards.
        """
        committed: list[str] = []
        rolled_back: list[str] = []
        rows = await self._pool.fetch(load_sql("queries/prepared_batches"), older_than)
        batches: dict[uuid.UUID, list[str]] = {}
        for row in rows:
            batches.setdefault(row["token"], []).append(row["gid"])
        for batch, gids in batches.items():
            if token is not None and batch != token:
                continue
            decided = await self._pool.fetchval(load_sql("queries/batch_decided"), batch)
            if not decided and gids[0] == _gid(batch, 0):
                try:
                    await self._pool.execute(_gid_statement("ROLLBACK PREPARED", gids[0]))
                    rolled_back.append(gids.pop(0))
                except asyncpg.UndefinedObjectError:  # its coordinator committed it just now
                    gids.pop(0)
                decided = await self._pool.fetchval(load_sql("queries/batch_decided"), batch)
            verb = "COMMIT PREPARED" if decided else "ROLLBACK PREPARED"
            for gid in gids:
                await self._pool.execute(_gid_statement(verb, gid))
                (committed if decided else rolled_back).append(gid)
        return RecoveryReport(committed, rolled_back)

    # -- already checked rows, for the audit writer -------------------------------------------

    async def copy_checked(
        self, conn: PooledConnection, rows: list[Row], batch_id: str, digest: bytes
    ) -> bool:
        """COPY rows that :func:`row_checker` already made, on ``conn``, in one transaction
        recorded in the ledger as ``batch_id`` with ``digest``; a row whose ``created_at`` is
        None takes the transaction's time. Returns False, writing nothing, when ``batch_id``
        was committed before (a retry after an ambiguous failure). Server errors are raised as
        they come, for the caller (:mod:`acgs_db.writer`) to tell a refusal from a lost
        connection."""
        async with conn.transaction():
            now, staged, claimed, _ = _one(
                await conn.fetchrow(
                    load_sql("queries/batch_start"),
                    batch_id,
                    len(rows),
                    milliseconds(self._timeout),
                    digest,
                )
            )
            if not claimed:
                return False
            filled = [row if row[-1] is not None else (*row[:-1], now) for row in rows]
            await self._copy_into(conn, filled, staged=staged)
        return True
