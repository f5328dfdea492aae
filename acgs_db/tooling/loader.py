"""Bulk loading of realistic synthetic validations, for benchmarks and plan checks.

:func:`load` streams :func:`acgs_db.tooling.synthetic.generate` through the repository's binary
COPY (``bulk_insert``), committing every ``commit_every`` rows so that a long load is not one giant
transaction and an interrupted one keeps what it committed. It then fills the decision cache with
one fresh entry per tenant and decision (one set-based statement), folds the rollup deltas the load
made (the older ones in the refresher's backlog slices, the window's by a refresh: the load pays
for its own fold, so the next refresh, the dashboards', costs what a steady one costs, and no
backlog is left to drain under a benchmark), runs ``VACUUM (ANALYZE)`` (or a plain ``ANALYZE``) so
that the planner sees the real data and index-only scans need no heap visit, and refreshes the
24-hour metrics view. Every id follows :mod:`acgs_db.tooling.synthetic`, so benchmark scripts can
name existing tenants and decisions.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from acgs_db.constants import CONSTITUTIONAL_HASH
from acgs_db.errors import ConfigurationError, SchemaNotReadyError
from acgs_db.refresher import MetricsRefresher
from acgs_db.repository import ValidationRepository
from acgs_db.resources import load_sql
from acgs_db.settings import Settings
from acgs_db.tooling.synthetic import Workload, generate

if TYPE_CHECKING:
    from acgs_db.pool import Pool
    from acgs_db.records import ValidationRecord

DEFAULT_COMMIT_EVERY = 200_000
"""Rows per COPY transaction: big enough to cost nothing measurable, small enough to keep WAL
and lock lifetimes short and to keep most of an interrupted load."""
MAX_TENANTS = 10_000
"""``tenant_name`` pads to 4 digits; the pgbench scripts spell ids with the same padding."""
MAX_DECISIONS = 10_000_000
"""``decision_name`` pads decisions to 7 digits."""
MAX_CACHE_ENTRIES = 10_000_000
"""Upper bound of tenants x decisions when filling the cache (one entry each)."""
PROGRESS_EVERY = 5_000
_NO_TIMEOUT = 30 * 86400.0  # asyncpg's timeout=None means command_timeout (5 s), not "none"

SCHEMA_HINT = "run `acgs-db migrate` (alembic upgrade head) first"


@dataclass(frozen=True, slots=True)
class LoadResult:
    """What a load wrote and how long each step took."""

    rows: int
    tenants: int
    decisions: int
    days: float
    commit_every: int | None
    copy_seconds: float
    cache_entries: int
    cache_seconds: float
    folded_deltas: int
    fold_seconds: float
    analyze_seconds: float
    vacuumed: bool
    refresh_seconds: float

    @property
    def rows_per_second(self) -> float:
        """Throughput of the COPY step alone (generation, checks and COPY, end to end)."""
        return self.rows / self.copy_seconds if self.copy_seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready summary (``kind: "load"``), which ``acgs-db bench report`` can read."""
        return {
            "kind": "load",
            "rows": self.rows,
            "tenants": self.tenants,
            "decisions": self.decisions,
            "days": self.days,
            "commit_every": self.commit_every,
            "copy_seconds": round(self.copy_seconds, 3),
            "rows_per_second": round(self.rows_per_second, 1),
            "cache_entries": self.cache_entries,
            "cache_seconds": round(self.cache_seconds, 3),
            "folded_deltas": self.folded_deltas,
            "fold_seconds": round(self.fold_seconds, 3),
            "analyze_seconds": round(self.analyze_seconds, 3),
            "vacuumed": self.vacuumed,
            "refresh_seconds": round(self.refresh_seconds, 3),
        }


def check_workload(workload: Workload, *, cache: bool = True) -> None:
    """Refuse shapes whose ids the benchmark scripts could not spell, or absurd cache sizes."""
    if workload.rows < 1:
        raise ConfigurationError(f"rows must be at least 1, got {workload.rows}")
    if not 1 <= workload.tenants <= MAX_TENANTS:
        raise ConfigurationError(f"tenants must lie in [1, {MAX_TENANTS}], got {workload.tenants}")
    if not 1 <= workload.decisions <= MAX_DECISIONS:
        raise ConfigurationError(
            f"decisions must lie in [1, {MAX_DECISIONS}], got {workload.decisions}"
        )
    if not workload.days > 0:
        raise ConfigurationError(f"days must be positive, got {workload.days}")
    entries = workload.tenants * workload.decisions
    if cache and entries > MAX_CACHE_ENTRIES:
        raise ConfigurationError(
            f"{workload.tenants} tenants x {workload.decisions} decisions would make {entries} "
            f"cache entries (limit {MAX_CACHE_ENTRIES}); use fewer, or load without the cache"
        )


T = TypeVar("T")


def counted(
    records: Iterable[T], on_rows: Callable[[int], None], every: int = PROGRESS_EVERY
) -> Iterator[T]:
    """Yield ``records`` unchanged, calling ``on_rows(n)`` every ``every`` items and at the end."""
    pending = 0
    for record in records:
        yield record
        pending += 1
        if pending == every:
            on_rows(pending)
            pending = 0
    if pending:
        on_rows(pending)


async def schema_ready(pool: Pool) -> bool:
    """True when the audit store's tables exist (the database was migrated)."""
    return bool(await pool.fetchval(load_sql("bench/schema_ready")))


async def fill_cache(pool: Pool, tenants: int, decisions: int) -> int:
    """One fresh decision-cache entry per tenant and decision; return how many were written."""
    status = await pool.execute(
        load_sql("bench/fill_cache"), tenants, decisions, CONSTITUTIONAL_HASH, timeout=_NO_TIMEOUT
    )
    return int(status.split()[-1])


async def load(
    pool: Pool,
    workload: Workload,
    *,
    settings: Settings | None = None,
    commit_every: int | None = DEFAULT_COMMIT_EVERY,
    cache: bool = True,
    vacuum: bool = True,
    on_rows: Callable[[int], None] | None = None,
    on_phase: Callable[[str], None] | None = None,
) -> LoadResult:
    """Write ``workload`` and prepare the database for benchmarks; see the module docstring.

    ``commit_every=None`` makes the whole load one transaction. ``on_rows(n)`` is told of rows
    as they are handed to COPY, ``on_phase(name)`` of each later step (for progress displays).
    """
    settings = settings or Settings.from_env()
    check_workload(workload, cache=cache)
    if not await schema_ready(pool):
        raise SchemaNotReadyError(
            f"the database has no constitutional_validations table: {SCHEMA_HINT}"
        )

    def phase(name: str) -> None:
        if on_phase is not None:
            on_phase(name)

    records: Iterable[ValidationRecord] = generate(workload)
    if on_rows is not None:
        records = counted(records, on_rows)
    repo = ValidationRepository(pool, settings)
    phase("copy")
    started = time.perf_counter()
    rows = await repo.bulk_insert(records, commit_every=commit_every)
    copy_seconds = time.perf_counter() - started

    entries, cache_seconds = 0, 0.0
    if cache:
        phase("cache")
        started = time.perf_counter()
        entries = await fill_cache(pool, workload.tenants, workload.decisions)
        await pool.execute(load_sql("bench/analyze_cache"), timeout=_NO_TIMEOUT)
        cache_seconds = time.perf_counter() - started

    # Before VACUUM, which also clears the dead delta and rollup rows the fold leaves. The older
    # deltas go in the refresher's slices (each its own short transaction, as between
    # refreshes), the window's in a refresh: no step is one giant transaction.
    phase("fold")
    started = time.perf_counter()
    refresher = MetricsRefresher(pool, settings=settings)
    folded = int(await pool.fetchval(load_sql("bench/count_deltas")))
    await refresher.drain_backlog(budget=math.inf)
    await refresher.refresh_once()
    fold_seconds = time.perf_counter() - started

    phase("vacuum" if vacuum else "analyze")
    started = time.perf_counter()
    statement = load_sql("bench/vacuum_analyze_load" if vacuum else "bench/analyze")
    await pool.execute(statement, timeout=_NO_TIMEOUT)
    analyze_seconds = time.perf_counter() - started

    phase("refresh")
    refreshed = await refresher.refresh_once()

    return LoadResult(
        rows=rows,
        tenants=workload.tenants,
        decisions=workload.decisions,
        days=workload.days,
        commit_every=commit_every,
        copy_seconds=copy_seconds,
        cache_entries=entries,
        cache_seconds=cache_seconds,
        folded_deltas=folded,
        fold_seconds=fold_seconds,
        analyze_seconds=analyze_seconds,
        vacuumed=vacuum,
        refresh_seconds=refreshed.duration_s,
    )
