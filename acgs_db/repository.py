"""The repository services import: writes (COPY, single insert), history, metrics, decision cache.

Every statement is loaded by name from ``sql/queries`` and run through asyncpg's statement
cache, so each is prepared once per connection on the server and reused (with
``ACGS_STATEMENT_CACHE_SIZE=0`` behind PgBouncer they run unnamed instead).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import asyncpg

from acgs_db.constants import CONSTITUTIONAL_HASH
from acgs_db.errors import AcgsDbError, TenantScopeError
from acgs_db.ingest import Ingest, Records, RecoveryReport
from acgs_db.jsoncodec import check_json
from acgs_db.pool import Pool
from acgs_db.records import (
    DECISION_HASH_MAX,
    DECISION_ID_MAX,
    TENANT_ID_MAX,
    CachedDecision,
    DecisionScore,
    HistoryEntry,
    Limits,
    TenantMetrics,
    ValidationRecord,
    check_score,
    check_text,
    copy_row,
)
from acgs_db.replicas import NEVER, ReadMethod, ReplicaRouter
from acgs_db.resources import load_sql
from acgs_db.settings import Settings
from acgs_db.writer import (
    DEFAULT_CONNECTIONS,
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_DELAY,
    DEFAULT_MAX_QUEUE,
    DEFAULT_RETRY_FOR,
    AuditWriter,
)

if TYPE_CHECKING:
    from acgs_db.metrics import Metrics
    from acgs_db.pool import Pool

T_co = TypeVar("T_co", covariant=True)

HISTORY_LIMIT_MAX = 1000
_METRICS_FIELDS = tuple(f.name for f in fields(TenantMetrics) if f.name not in ("source", "as_of"))


class ValidationRepository:
    """Reads and writes of the audit store over an asyncpg pool from :func:`create_pool`.

    ``tenant_scoped=True`` is for pools that log in as a tenant login (a member of the tenant
    role bound to one tenant: ``acgs-db tenant-login grant``). Row-level security shows and
    lets it write that tenant's rows only, whatever it runs; the repository also refuses, with
    :class:`TenantScopeError`, a call naming another tenant (it would find nothing), and reads
    metrics through the tenant-filtered view and function.
    """

    def __init__(
        self,
        pool: Pool,
        settings: Settings | None = None,
        *,
        metrics: Metrics | None = None,
        tenant_scoped: bool = False,
    ) -> None:
        self._pool = pool
        self._settings = settings or Settings.from_env()
        self._metrics = metrics
        self._scoped = tenant_scoped
        self._limits = Limits(
            max_details_bytes=self._settings.max_details_bytes,
            max_processing_time_ms=self._settings.max_processing_time_ms,
            max_clock_skew=self._settings.max_clock_skew,
        )
        self._ingest = Ingest(
            pool, self._limits, self._settings.copy_timeout, pooler=self._settings.pooler
        )
        self._bound: str | None = None
        self._router: ReplicaRouter | None = pool.replicas if isinstance(pool, Pool) else None
        self._written_at = NEVER  # monotonic time this instance's last write was acknowledged
        if self._router is not None and metrics is not None:
            self._router.report_to(metrics)

    @property
    def pool(self) -> Pool:
        return self._pool

    async def _run(
        self, run: _Statement[T_co], name: str, args: tuple[object, ...], tenant: str | None
    ) -> T_co:
        """Run the named statement with the pool's ``run`` (its fetch, fetchrow...), timed into
        the statement-duration histogram when metrics are on; a tenant-scoped repository
        first checks that ``tenant`` is its login's."""
        if self._scoped and tenant is not None:
            await self._check_scope(tenant)
        started = time.perf_counter()
        try:
            return await run(load_sql(f"queries/{name}"), *args)
        finally:
            if self._metrics is not None:
                duration = time.perf_counter() - started
                self._metrics.statement_duration.labels(name).observe(duration)

    async def _fetch(
        self, name: str, *args: object, tenant: str | None = None
    ) -> list[asyncpg.Record]:
        return await self._run(self._pool.fetch, name, args, tenant)

    async def _fetchrow(
        self, name: str, *args: object, tenant: str | None = None
    ) -> asyncpg.Record | None:
        return await self._run(self._pool.fetchrow, name, args, tenant)

    async def _fetchval(self, name: str, *args: object, tenant: str | None = None) -> Any:
        return await self._run(self._pool.fetchval, name, args, tenant)

    async def _execute(self, name: str, *args: object, tenant: str | None = None) -> str:
        return await self._run(self._pool.execute, name, args, tenant)

    async def _read(
        self, method: ReadMethod, name: str, *args: Any, tenant: str | None = None
    ) -> Any:
        """Like :meth:`_run` for a read a standby may answer (:mod:`acgs_db.replicas`): one
        within the lag bound that has replayed this instance's last write, else the primary."""
        if self._router is None:
            run = self._pool.fetch if method == "fetch" else self._pool.fetchrow
            return await self._run(run, name, args, tenant)
        if self._scoped and tenant is not None:
            await self._check_scope(tenant)
        started = time.perf_counter()
        try:
            return await self._router.read(
                method,
                load_sql(f"queries/{name}"),
                args,
                written_at=self._written_at,
                metrics=self._metrics,
            )
        finally:
            if self._metrics is not None:
                duration = time.perf_counter() - started
                self._metrics.statement_duration.labels(name).observe(duration)

    async def bound_tenant(self) -> str:
        """The tenant this tenant-scoped repository's login is bound to (asked once)."""
        if self._bound is None:
            bound = await self._pool.fetchval(load_sql("queries/session_tenant"))
            if bound is None:
                raise TenantScopeError(
                    "this login is bound to no tenant: bind it with "
                    "`acgs-db tenant-login grant LOGIN TENANT` (it sees nothing until then)"
                )
            self._bound = str(bound)
        return self._bound

    async def _check_scope(self, tenant: str) -> None:
        bound = await self.bound_tenant()
        if tenant != bound:
            raise TenantScopeError(
                f"this login is bound to tenant {bound!r}; the call names {tenant!r}"
            )

    # -- writes ---------------------------------------------------------------------------

    async def insert(self, record: ValidationRecord) -> int:
        """Write one validation and return its id (a prepared INSERT, not COPY)."""
        now = datetime.now(UTC)
        row = list(copy_row(record, self._limits, now))
        if record.created_at is None:
            row[-1] = None  # the server's now(), not this host's clock
        try:
            return int(await self._fetchval("insert", *row, tenant=row[0]))
        finally:  # even a failure may have committed (connection lost after COMMIT)
            self._wrote()

    async def bulk_insert(
        self,
        records: Records,
        *,
        batch_id: str | None = None,
        commit_every: int | None = None,
        connections: int = 1,
    ) -> int:
        """Write validations with binary COPY; return the number of rows written.

        ``records`` may be any iterable or async iterable; it is streamed, so memory stays flat
        however long it is. Every record is checked as it is read and before its row is sent;
        the first bad one raises :class:`InvalidRecordError` naming its index, and nothing of
        the call is written: one call is one transaction and one COPY.

        * ``batch_id``: recorded in the same transaction with a digest of the rows; calling
          again with an id that was committed writes nothing and returns 0 for the same rows (a
          safe retry after an ambiguous failure) and raises :class:`BatchConflictError` for
          other rows.
        * ``commit_every=N``: a transaction per N rows, for endless streams; a failure then
          says, in the error's ``committed``, how many rows of earlier chunks are stored.
        * ``connections=N``: COPY over N connections at once, all or nothing through
          two-phase commit (needs ``max_prepared_transactions >= N``; see :mod:`acgs_db.ingest`
          for what it guarantees).

        A cancellation at any await gives every connection back and leaves the batch stored
        whole or not at all (see :mod:`acgs_db.ingest`).
        """
        if self._scoped and batch_id is not None:
            raise TenantScopeError(
                "batch_id needs a service login: the batch ledger is not a tenant's (a tenant "
                "login's bulk insert is one transaction, all or nothing, without it)"
            )
        started = time.perf_counter()
        try:
            written = await self._ingest.copy(
                records,
                batch_id=batch_id,
                commit_every=commit_every,
                connections=connections,
                tenant=await self.bound_tenant() if self._scoped else None,
            )
        finally:  # chunks of commit_every may be stored whatever happened
            self._wrote()
        if self._metrics is not None:
            self._metrics.rows_copied.inc(written)
            duration = time.perf_counter() - started
            self._metrics.statement_duration.labels("bulk_insert").observe(duration)
        return written

    def audit_writer(
        self,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_delay: float = DEFAULT_MAX_DELAY,
        max_queue: int = DEFAULT_MAX_QUEUE,
        connections: int = DEFAULT_CONNECTIONS,
        retry_for: float = DEFAULT_RETRY_FOR,
    ) -> AuditWriter:
        """A group-commit writer for request handlers: ``async with repo.audit_writer() as w``,
        then ``await w.write(record)`` returns once the record is committed; concurrent writes
        share one COPY and one commit per batch (see :mod:`acgs_db.writer`).

        ``max_batch`` records per batch at most; ``max_delay`` seconds a free connection may
        wait for a batch to fill while another is in flight (0: never); ``max_queue`` records
        waiting at most (then write() waits, or raises WriterOverloaded with ``wait=False``);
        ``connections`` held from the pool; ``retry_for`` seconds a batch whose outcome is
        unknown (connection lost, server down) is retried with the same ledger id.
        """
        if self._scoped:
            raise AcgsDbError("audit_writer is not available for tenant-scoped repositories yet")
        return AuditWriter(
            self._pool,
            self._ingest,
            self._limits,
            max_batch=max_batch,
            max_delay=max_delay,
            max_queue=max_queue,
            connections=connections,
            retry_for=retry_for,
            metrics=self._metrics,
            on_commit=self._wrote,
        )

    def _wrote(self) -> None:
        """Remember that a write of this instance was acknowledged (or may have been): its
        reads then wait for a standby that has replayed past this moment (read-your-writes)."""
        self._written_at = time.monotonic()

    async def recover_prepared(
        self, older_than: timedelta = timedelta(minutes=1)
    ) -> RecoveryReport:
        """Finish or roll back multi-connection batches left prepared by a crashed writer."""
        return await self._ingest.recover(older_than)

    # -- reads ----------------------------------------------------------------------------

    async def history(
        self, tenant_id: str, decision_id: str, limit: int = 10
    ) -> list[HistoryEntry]:
        """A tenant's validations of one decision, newest first."""
        check_text("tenant_id", tenant_id, TENANT_ID_MAX)
        check_text("decision_id", decision_id, DECISION_ID_MAX)
        _check_limit(limit)
        if self._scoped:
            rows = await self._read(
                "fetch",
                "history_scoped",
                tenant_id,
                decision_id,
                CONSTITUTIONAL_HASH,
                limit,
                tenant=tenant_id,
            )
        else:
            rows = await self._read(
                "fetch",
                "history",
                tenant_id,
                decision_id,
                CONSTITUTIONAL_HASH,
                limit,
                tenant=tenant_id,
            )
        return [HistoryEntry(*row) for row in rows]

    async def decision_scores(self, decision_id: str) -> list[DecisionScore]:
        """Score and processing time of every validation of a decision (index-only scan)."""
        check_text("decision_id", decision_id, DECISION_ID_MAX)
        rows = await self._read("fetch", "decision_scores", decision_id, CONSTITUTIONAL_HASH)
        return [DecisionScore(*row) for row in rows]

    async def tenant_metrics(
        self,
        tenant_id: str,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> TenantMetrics | None:
        """A tenant's figures over the last 24 hours, or over ``[since, until)``; None when it
        has no validation there.

        Without a range: read from the materialized view while it is fresher than the
        staleness bound (``ACGS_METRICS_STALENESS``, default twice the refresh interval) and
        holds the tenant; otherwise computed right now from the rollup (exactly the same
        figures), with ``source="realtime"``.

        With ``since`` (and ``until``, default now; both timezone-aware, ``since < until``):
        exactly the seed's figures over that range, computed right now by one statement
        (whole hours from the rollup, the partial edge hours from raw rows), with
        ``source="range"``.
        """
        check_text("tenant_id", tenant_id, TENANT_ID_MAX)
        if since is not None or until is not None:
            low, high = check_range(since, until)
            if self._scoped:
                row = await self._read(
                    "fetchrow", "metrics_range_scoped", low, high, tenant=tenant_id
                )
            else:
                row = await self._read("fetchrow", "metrics_range", tenant_id, low, high)
            return None if row is None else _metrics(row)
        staleness = self._settings.staleness
        try:
            if self._scoped:
                row = await self._read("fetchrow", "metrics_scoped", staleness, tenant=tenant_id)
            else:
                row = await self._read(
                    "fetchrow", "metrics", tenant_id, CONSTITUTIONAL_HASH, staleness
                )
        except asyncpg.ObjectNotInPrerequisiteStateError:  # the view was never populated
            if self._scoped:
                row = await self._read("fetchrow", "metrics_scoped_realtime", tenant=tenant_id)
            else:
                row = await self._read("fetchrow", "metrics_realtime", tenant_id)
        return None if row is None else _metrics(row)

    # -- decision cache -------------------------------------------------------------------

    async def get_cached_decision(
        self,
        tenant_id: str,
        decision_hash: str,
        max_age: timedelta = timedelta(minutes=5),
    ) -> CachedDecision | None:
        """The cached result for a decision, only while younger than ``max_age``."""
        check_text("tenant_id", tenant_id, TENANT_ID_MAX)
        check_text("decision_hash", decision_hash, DECISION_HASH_MAX)
        _check_age(max_age)
        row = await self._fetchrow(
            "cache_get",
            tenant_id,
            decision_hash,
            CONSTITUTIONAL_HASH,
            max_age,
            tenant=tenant_id,
        )
        return None if row is None else CachedDecision(*row)

    async def cache_decision(
        self,
        tenant_id: str,
        decision_hash: str,
        validation_score: float,
        compliance_details: Any = None,
        requirements: Any = None,
    ) -> None:
        """Store (or replace) a decision's validation result; its age restarts now."""
        limit = self._settings.max_details_bytes
        check_text("tenant_id", tenant_id, TENANT_ID_MAX)
        await self._execute(
            "cache_put",
            tenant_id,
            check_text("decision_hash", decision_hash, DECISION_HASH_MAX),
            CONSTITUTIONAL_HASH,
            check_score("validation_score", validation_score),
            check_json("compliance_details", compliance_details, limit),
            check_json("requirements", requirements, limit),
            tenant=tenant_id,
        )

    async def purge_expired_cache(self, max_age: timedelta = timedelta(minutes=5)) -> int:
        """Delete cached results older than ``max_age``; return how many were deleted."""
        _check_age(max_age)
        return int(await self._fetchval("cache_purge", max_age))


class _Statement(Protocol[T_co]):
    """A pool method that runs a statement: fetch, fetchrow, fetchval, execute."""

    def __call__(self, query: str, /, *args: object) -> Awaitable[T_co]: ...


def _metrics(row: asyncpg.Record) -> TenantMetrics:
    # Columns: source, the view's columns in TenantMetrics' order, then when.
    figures = dict(zip(_METRICS_FIELDS, tuple(row)[1:-1], strict=True))
    return TenantMetrics(**figures, source=row[0], as_of=row[-1])


def check_range(since: object, until: object) -> tuple[datetime, datetime]:
    """``[since, until)`` of a ranged metrics call: aware datetimes, ``until`` defaulting to now,
    ``since`` before ``until``; anything else is refused with :class:`AcgsDbError`."""
    if not isinstance(since, datetime):
        raise AcgsDbError(f"since must be a timezone-aware datetime, got {since!r}")
    if until is None:
        until = datetime.now(UTC)
    if not isinstance(until, datetime):
        raise AcgsDbError(f"until must be a timezone-aware datetime, got {until!r}")
    for name, value in (("since", since), ("until", until)):
        if value.tzinfo is None or value.utcoffset() is None:
            raise AcgsDbError(f"{name} must be timezone-aware (naive datetime {value.isoformat()})")
    if not since < until:
        raise AcgsDbError(
            f"since must be before until, got [{since.isoformat()}, {until.isoformat()})"
        )
    return since, until


def _check_limit(limit: object) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= HISTORY_LIMIT_MAX:
        raise AcgsDbError(f"limit must be an integer in [1, {HISTORY_LIMIT_MAX}], got {limit!r}")


def _check_age(max_age: object) -> None:
    if not isinstance(max_age, timedelta) or max_age <= timedelta(0):
        raise AcgsDbError(f"max_age must be a positive timedelta, got {max_age!r}")
