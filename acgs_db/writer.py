"""The audit writer: many concurrent single validations, one binary COPY and one commit per batch.

A request handler calls ``await writer.write(record)``; it returns once the record is committed
(durable: the commit's WAL is flushed, never earlier). Concurrent calls are gathered into
batches, each one COPY and one commit (one WAL flush) on a connection the writer holds.

Design decisions, and why:

* **Group commit, not a timer.** A connection that is free takes every record queued (up to
  ``max_batch``) at once: while the server is idle a record is sent the moment it arrives, and
  while the connection is busy the next batch fills in memory and leaves as soon as the
  connection is free, so batch sizes follow the load by themselves. A timer would be wrong with
  closed-loop producers (each waits for its acknowledgement before its next write): with 64 of
  them a batch can never hold more than 64 records, and waiting for more only idles the server.
  ``max_delay`` (default 0) is a linger for ``connections >= 2`` only: while another batch is in
  flight (the server is busy anyway) a free connection may wait up to ``max_delay`` after the
  first queued record for its batch to fill; it never delays a record while nothing is in
  flight.
* **Connections (default 1).** Each carries one batch at a time. A free connection takes
  everything queued (up to ``max_batch``); a record that arrives while a batch is in flight
  leaves on another free connection. What is queued is never split among free connections:
  splitting 64 closed-loop records into two batches measured slower (previous session: 1
  connection 6,416 validations/s, 2 splitting: 3,475), since the server's CPU, not the commit
  flush, is the bound on the 2-core development machine. With 64 closed-loop producers the
  second connection then stays idle; at a fixed rate it takes the arrivals during a batch (in
  ``acgs-db bench writer --rate 500`` at load 15 it changed nothing measurable: README). The
  connections are taken from the pool when the writer starts and held until it closes (one
  lost with the server is replaced).
* **One round trip per batch.** A batch of up to :data:`STATEMENT_MAX` rows is one statement
  (``queries/writer_batch``): a data-modifying CTE claims the batch id in ``ingest_batches``
  and an ``INSERT ... SELECT FROM unnest(arrays)`` inserts the rows only if the claim
  succeeded, in one implicit transaction: one round trip, one commit. Larger batches take
  :meth:`Ingest.copy_checked` (BEGIN, claim, COPY, COMMIT), ahead for 1,000 rows. The ledger's
  statement-level trigger records both alike.
* **Checks at write().** A record is checked (:func:`acgs_db.records.row_checker`) and encoded
  in its caller's ``write()``: a bad one raises :class:`InvalidRecordError` there and never
  enters a batch. ``created_at=None`` stays None until the batch's transaction, where it
  becomes the server's transaction time, as with ``bulk_insert``; a future ``created_at`` is
  bounded by this host's clock plus ``ACGS_MAX_CLOCK_SKEW`` (within a second: the checker is
  rebuilt once a second).
* **One ledger row per batch.** Every batch gets a uuid ``batch_id`` recorded in
  ``ingest_batches`` in its own transaction, with the rows' digest (:mod:`acgs_db.digest`).
  After a lost connection, a timeout or a killed server the outcome of the commit is unknown;
  the writer retries the batch with the same id on a new connection, with backoff, for up to
  ``retry_for`` seconds: a batch that did commit claims nothing and writes nothing again, one
  that did not is written. Only then are its callers answered: acknowledged, or, when the
  server stayed away, :class:`AuditWriteError` with ``maybe_committed=True`` and the batch id
  (False when no attempt reached the server). A retry that finds its batch committed
  compares the stored digest with its rows' (different: a reused batch id, the callers fail,
  not committed). The refresher purges ledger rows older than ACGS_BATCH_LEDGER_RETENTION
  (migration 0012), never fewer than an hour old: far beyond ``retry_for``.
* **A batch the server refuses** (a constraint or data error the client checks did not catch:
  SQLSTATE classes 22, 23) is split in halves and each half retried, recursively, so only the
  offending record's caller gets :class:`AuditWriteError` (``maybe_committed=False``); this
  costs about 2 log2(n) extra transactions per bad record. Other refusals (privileges, a
  missing table: class 42) fail the whole batch at once.
* **Cancellation.** A caller cancelled while its record is still queued: the record is
  dropped, never written. Cancelled once its batch is in flight: the record is written but
  nobody is told (the same as a cancelled ``insert()`` whose commit went through).
* **Backpressure.** At most ``max_queue`` records wait (a semaphore): beyond that ``write()``
  waits for room, or raises :class:`WriterOverloaded` with ``wait=False``. Memory is bounded by
  ``max_queue`` plus ``connections * max_batch`` records in flight.
* **Shutdown.** Leaving the context (or :meth:`AuditWriter.close`) writes every queued record,
  then gives the connections back. ``write()`` after that, or waiting for room when it began,
  raises :class:`WriterClosedError`. A cancelled close fails the records still queued
  (``maybe_committed=False``) and those in flight (``maybe_committed=True``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

import asyncpg

from acgs_db.digest import BatchDigest
from acgs_db.errors import AuditWriteError, WriterClosedError, WriterOverloaded
from acgs_db.records import Limits, ValidationRecord, row_checker
from acgs_db.resources import load_sql

if TYPE_CHECKING:
    from acgs_db.ingest import Ingest
    from acgs_db.metrics import Metrics
    from acgs_db.pool import Pool, PooledConnection

Row = tuple[Any, ...]

DEFAULT_MAX_BATCH = 1000
DEFAULT_MAX_DELAY = 0.0
DEFAULT_MAX_QUEUE = 10_000
DEFAULT_CONNECTIONS = 1
DEFAULT_RETRY_FOR = 30.0
STATEMENT_MAX = 256
"""Batches up to this many rows are one statement (one round trip); larger ones one COPY."""
_REFUSED = ("22", "23")  # SQLSTATE classes the bisection isolates: data, integrity
_FINAL = (*_REFUSED, "42")  # refusals a retry cannot change: also syntax and privileges
_CHECKER_AGE = 1.0  # seconds a row checker (and its "now") is reused
_BACKOFF = (0.05, 1.0)  # first and largest pause between retries of a batch, seconds


@dataclass(frozen=True, slots=True)
class WriterStatus:
    """A snapshot of an :class:`AuditWriter`."""

    queued: int
    """Records waiting for a batch (a cancelled caller's until a batch skips it)."""
    in_flight: int
    """Records in batches being written."""
    written: int
    """Records committed (callers cancelled while their batch was in flight included)."""
    batches: int
    """Batches committed."""
    failed: int
    """Records whose write() raised AuditWriteError."""
    retries: int
    """Batch attempts repeated after a lost connection, a timeout or a transient error."""
    closed: bool
    last_error: str | None


class _Entry:
    __slots__ = ("future", "row", "started")

    def __init__(self, row: Row, future: asyncio.Future[None], started: float) -> None:
        self.row = row
        self.future = future
        self.started = started


class _Refused(Exception):
    """The server refused a batch (its transaction rolled back): nothing of it is stored."""

    def __init__(self, cause: asyncpg.PostgresError) -> None:
        self.cause = cause
        super().__init__(str(cause))


class _Conflict(Exception):
    """The batch id was committed before with other rows (its ledger digest differs): these
    rows are not stored. Only a defect (a batch id reused) can get here."""


class _Unsettled(Exception):
    """The batch could not be written within ``retry_for`` seconds; ``attempted``: some
    attempt reached the server, so its outcome is unknown (the ledger knows)."""

    def __init__(self, cause: BaseException, attempted: bool) -> None:
        self.cause = cause
        self.attempted = attempted
        super().__init__(repr(cause))


class _Lane:
    """One connection of the writer, taken from the pool when needed and held."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool
        self._conn: PooledConnection | None = None

    async def connection(self) -> PooledConnection:
        if self._conn is None:
            self._conn = await self._pool.acquire()
        return self._conn

    async def discard(self) -> None:
        """Drop a connection in an unknown state (the pool opens a new one when asked)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.terminate()
            with contextlib.suppress(Exception):
                await self._pool.release(conn)

    async def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await self._pool.release(conn)
            except Exception:
                with contextlib.suppress(Exception):
                    conn.terminate()


class AuditWriter:
    """Group-commit writer of validations; use ``async with repo.audit_writer() as writer``.

    ``await writer.write(record)`` returns once the record is committed. See the module's
    documentation for batching, retries, cancellation and backpressure.
    """

    def __init__(
        self,
        pool: Pool,
        ingest: Ingest,
        limits: Limits,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_delay: float = DEFAULT_MAX_DELAY,
        max_queue: int = DEFAULT_MAX_QUEUE,
        connections: int = DEFAULT_CONNECTIONS,
        retry_for: float = DEFAULT_RETRY_FOR,
        metrics: Metrics | None = None,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        if max_batch < 1 or max_queue < 1 or connections < 1:
            raise ValueError("max_batch, max_queue and connections must be at least 1")
        if max_delay < 0 or retry_for < 0:
            raise ValueError("max_delay and retry_for must not be negative")
        self._pool = pool
        self._ingest = ingest
        self._limits = limits
        self._max_batch = max_batch
        self._max_delay = max_delay
        self._max_queue = max_queue
        self._retry_for = retry_for
        self._metrics = metrics
        self._on_commit = on_commit  # told before callers learn their batch is (maybe) stored
        self._lanes = [_Lane(pool) for _ in range(connections)]
        self._queue: collections.deque[_Entry] = collections.deque()
        self._room = asyncio.Semaphore(max_queue)
        self._wake = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        self._flights: set[tuple[_Entry, ...]] = set()
        self._check: Callable[[ValidationRecord], Row] | None = None
        self._check_until = 0.0
        self._closing = False
        self._started = False
        self._busy = 0
        self._written = 0
        self._batches = 0
        self._failed = 0
        self._retries = 0
        self._last_error: str | None = None

    # -- life cycle -------------------------------------------------------------------------

    async def __aenter__(self) -> AuditWriter:
        await self.start()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Take the connections from the pool and start one batch loop per connection."""
        if self._started:
            raise RuntimeError("an AuditWriter is started once")
        self._started = True
        try:
            for lane in self._lanes:
                await lane.connection()
        except BaseException:
            for lane in self._lanes:
                await lane.release()
            self._closing = True
            raise
        self._workers = [asyncio.create_task(self._run(lane)) for lane in self._lanes]

    async def close(self) -> None:
        """Write every queued record, then give the connections back. Idempotent."""
        self._closing = True
        self._wake.set()
        if not self._workers:
            return
        try:
            await asyncio.gather(*self._workers)
        except BaseException:
            for task in self._workers:
                task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.gather(*self._workers, return_exceptions=True)
            self._abandon()
            raise

    def _abandon(self) -> None:
        """After a cancelled close: answer every caller still queued (those in flight were
        answered by their loop), and let writes waiting for room raise WriterClosedError."""
        queued = list(self._queue)
        self._queue.clear()
        for _ in queued:
            self._room.release()
        self._fail(
            queued,
            "the audit writer was closed before this record was sent",
            maybe_committed=False,
            batch_id="(none)",
        )

    @property
    def status(self) -> WriterStatus:
        in_flight = sum(len(flight) for flight in self._flights)
        return WriterStatus(
            queued=len(self._queue),
            in_flight=in_flight,
            written=self._written,
            batches=self._batches,
            failed=self._failed,
            retries=self._retries,
            closed=self._closing,
            last_error=self._last_error,
        )

    # -- callers ----------------------------------------------------------------------------

    async def write(self, record: ValidationRecord, *, wait: bool = True) -> None:
        """Write one validation; return once it is committed.

        Raises :class:`InvalidRecordError` at once for a bad record, :class:`WriterOverloaded`
        when the queue is full and ``wait`` is False, :class:`WriterClosedError` once the
        writer is closing, and :class:`AuditWriteError` when its batch failed at the server.
        """
        started = time.perf_counter()
        row = self._checker(started)(record)
        if record.created_at is None:
            row = (*row[:-1], None)  # the batch's transaction time, on the server
        if self._closing or not self._started:
            raise WriterClosedError("the audit writer is not open (use `async with`)")
        if not wait and self._room.locked():
            raise WriterOverloaded(
                f"the audit writer's queue holds {self._max_queue} records (max_queue)"
            )
        await self._room.acquire()
        if self._closing:
            self._room.release()
            raise WriterClosedError("the audit writer closed while this record waited for room")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(_Entry(row, future, started))
        if self._metrics is not None:
            self._metrics.writer_queue_depth.set(len(self._queue))
        self._wake.set()
        await future

    def _checker(self, now: float) -> Callable[[ValidationRecord], Row]:
        if self._check is None or now >= self._check_until:
            self._check = row_checker(self._limits, datetime.now(UTC))
            self._check_until = now + _CHECKER_AGE
        return self._check

    # -- batches ----------------------------------------------------------------------------

    async def _run(self, lane: _Lane) -> None:
        try:
            while (batch := await self._take()) is not None:
                flight = tuple(batch)
                self._flights.add(flight)
                self._busy += 1
                try:
                    await self._write(lane, flight)
                except BaseException as exc:  # a cancelled close, or a defect
                    self._fail(flight, f"the batch was interrupted ({exc!r})", True, "(unknown)")
                    await lane.discard()
                    if not isinstance(exc, Exception):
                        raise  # cancelled: end the loop
                finally:
                    self._busy -= 1
                    self._flights.discard(flight)
                    self._wake.set()
        finally:
            await lane.release()

    async def _take(self) -> list[_Entry] | None:
        """The next batch: every live queued record up to ``max_batch``; None once closing
        with nothing queued."""
        while True:
            if self._queue:
                if self._max_delay > 0 and self._busy > 0:
                    await self._linger()
                # Everything queued (up to max_batch) leaves at once on this connection; a
                # record that arrives while it is in flight leaves on another free one.
                batch = self._pop(self._max_batch)
                if batch:
                    return batch
                continue
            if self._closing:
                return None
            self._wake.clear()
            await self._wake.wait()

    async def _linger(self) -> None:
        """While another batch is in flight, wait up to ``max_delay`` after the first queued
        record's arrival for the batch to fill."""
        deadline = self._queue[0].started + self._max_delay
        while len(self._queue) < self._max_batch and self._busy > 0 and not self._closing:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), remaining)

    def _pop(self, limit: int) -> list[_Entry]:
        """Take up to ``limit`` records off the queue, dropping those whose caller was
        cancelled meanwhile (they are never written)."""
        batch: list[_Entry] = []
        queue = self._queue
        while queue and len(batch) < limit:
            entry = queue.popleft()
            self._room.release()
            if not entry.future.done():
                batch.append(entry)
        if self._metrics is not None:
            self._metrics.writer_queue_depth.set(len(queue))
        return batch

    async def _write(self, lane: _Lane, batch: Sequence[_Entry]) -> None:
        """Store a batch and answer its callers; a refused batch is split to isolate the
        record the server refuses."""
        batch_id = str(uuid.uuid4())
        try:
            await self._store(lane, [entry.row for entry in batch], batch_id)
        except _Conflict:
            self._fail(
                batch,
                "batch id committed before with other rows (BatchConflictError): not stored",
                False,
                batch_id,
            )
            return
        except _Refused as refused:
            if len(batch) > 1 and (refused.cause.sqlstate or "")[:2] in _REFUSED:
                half = len(batch) // 2
                await self._write(lane, batch[:half])
                await self._write(lane, batch[half:])
                return
            self._fail(batch, f"the server refused the batch: {refused.cause}", False, batch_id)
            return
        except _Unsettled as unsettled:
            self._fail(
                batch,
                f"the batch could not be written within {self._retry_for} s ({unsettled.cause!r})",
                unsettled.attempted,
                batch_id,
            )
            return
        self._acknowledge(batch)

    async def _store(self, lane: _Lane, rows: list[Row], batch_id: str) -> None:
        """Commit the rows as batch ``batch_id``, retrying with the same id (the ledger makes a
        repeat write nothing) after errors that leave the outcome unknown or may pass."""
        deadline = time.monotonic() + self._retry_for
        pause = _BACKOFF[0]
        attempted = False
        digest = batch_digest(rows)
        while True:
            try:
                conn = await lane.connection()
                attempted = True
                if not await self._commit(conn, rows, batch_id, digest):
                    # Committed before (a retry after an ambiguous commit): nothing written
                    # now; the ledger's digest says whether it holds these very rows.
                    stored = await conn.fetchval(load_sql("queries/batch_digest"), batch_id)
                    if stored is not None and stored != digest:
                        raise _Conflict(batch_id)
                return
            except asyncpg.PostgresError as exc:
                if exc.sqlstate is not None and exc.sqlstate[:2] in _FINAL:
                    raise _Refused(exc) from exc  # rolled back: nothing of it is stored
                failure: BaseException = exc
            except (asyncpg.InterfaceError, asyncpg.InternalClientError, OSError) as exc:
                failure = exc
            except TimeoutError as exc:
                failure = exc
            self._last_error = repr(failure)
            await lane.discard()
            if time.monotonic() + pause > deadline:
                raise _Unsettled(failure, attempted)
            self._retries += 1
            if self._metrics is not None:
                self._metrics.writer_retries.inc()
            await asyncio.sleep(pause)
            pause = min(pause * 2, _BACKOFF[1])

    async def _commit(
        self, conn: PooledConnection, rows: list[Row], batch_id: str, digest: bytes
    ) -> bool:
        """One attempt at batch ``batch_id``; False when it was committed before (nothing is
        written). Up to :data:`STATEMENT_MAX` rows: one statement (claim and rows, one round
        trip, one implicit transaction); more: one transaction with a COPY."""
        if len(rows) > STATEMENT_MAX:
            return await self._ingest.copy_checked(conn, rows, batch_id, digest)
        tenants, decisions, hashes, scores, details, took, created = zip(*rows, strict=True)
        status = await conn.execute(
            load_sql("queries/writer_batch"),
            batch_id,
            tenants,
            decisions,
            hashes[0],  # the checks admit one constitutional hash
            scores,
            details,
            took,
            created,
            digest,
        )
        return bool(status != "INSERT 0 0")  # a batch holds at least one row

    def _acknowledge(self, batch: Sequence[_Entry]) -> None:
        if self._on_commit is not None:
            self._on_commit()
        now = time.perf_counter()
        self._written += len(batch)
        self._batches += 1
        metrics = self._metrics
        if metrics is not None:
            metrics.writer_records.inc(len(batch))
            metrics.writer_batches.inc()
            metrics.writer_batch_size.observe(len(batch))
        for entry in batch:
            if not entry.future.done():
                entry.future.set_result(None)
            if metrics is not None:
                metrics.writer_ack_latency.observe(now - entry.started)

    def _fail(
        self, batch: Sequence[_Entry], message: str, maybe_committed: bool, batch_id: str
    ) -> None:
        if maybe_committed and self._on_commit is not None:
            self._on_commit()
        self._failed += len(batch)
        self._last_error = message
        if self._metrics is not None:
            self._metrics.writer_failures.inc(len(batch))
        for entry in batch:
            if not entry.future.done():
                entry.future.set_exception(
                    AuditWriteError(message, maybe_committed=maybe_committed, batch_id=batch_id)
                )


def batch_digest(rows: Sequence[Row]) -> bytes:
    """The ledger digest (:mod:`acgs_db.digest`) of checked rows; a ``created_at`` of None
    (the server's time) is encoded as not given, as ``bulk_insert`` encodes it."""
    digest = BatchDigest()
    for row in rows:
        digest.add(row, row[-1] is not None)
    return digest.digest()
