"""Reads from hot standbys: bounded staleness and read-your-writes, measured by WAL position.

One number per standby carries both guarantees: ``covered_at``, the (monotonic) start time of
the newest sample of the primary's WAL position that the standby has replayed. A sample
started at ``t`` bounds every commit acknowledged before ``t``, so a standby whose replay
position reached it holds all of them:

* bounded staleness: a standby serves only while ``now - covered_at <= max_lag``. An idle
  primary does not age a standby: its position stays put, the standby has replayed it, and
  every new sample covers it again (lag 0); only a standby behind the primary ages;
* read-your-writes: a repository remembers when its last write was acknowledged
  (``written_at``) and reads from a standby only once ``covered_at > written_at``.

Both positions are sampled in the background (one task for the primary and one per standby,
each on a connection of its own, every ``probe_interval``), so routing a read costs no round
trip: a clock read and a few comparisons. A standby whose probe or read fails is marked down at
once and the read goes on to the next standby, then the primary; it serves again once its
probe answers and it has caught up.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import time
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import asyncpg

from acgs_db.resources import load_sql

if TYPE_CHECKING:
    from prometheus_client import Counter

    from acgs_db.metrics import Metrics
    from acgs_db.pool import Pool

PRIMARY = "primary"
"""Target label of reads the primary answered."""
PROBE_INTERVAL = 0.1
"""Seconds between two samples of each server's WAL position (at most a quarter of the lag
bound): the granularity of both guarantees."""
PROBE_TIMEOUT = 2.0
"""Seconds a probe may take before its server counts as down."""
ReadMethod = Literal["fetch", "fetchrow"]
NEVER = -math.inf

# A read a standby could not answer, retried elsewhere: the connection or the server is gone
# (08, 57: shut down, starting, crashed), or replay cancelled the statement (40001 / 40P01,
# a recovery conflict).
_FAULTS = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,  # a connection left mid-operation by its lost server
    asyncpg.PostgresConnectionError,
)
_RETRYABLE_STATES = ("08", "57", "40")


@dataclass(slots=True)
class Standby:
    """One hot standby: its pool and what its probe last saw."""

    name: str
    pool: Pool
    dsn: str
    covered_at: float = NEVER
    """Start (monotonic) of the newest primary sample this standby has replayed; -inf: down."""
    replayed: int | None = None
    paused: bool = False
    up: bool = False
    probe: asyncpg.Connection | None = field(default=None, repr=False)


class ReplicaRouter:
    """Routes the repository's reads to a standby within the bounds, else to the primary."""

    def __init__(
        self,
        primary: Pool,
        primary_dsn: str,
        standbys: list[Standby],
        *,
        max_lag: float,
        probe_interval: float = PROBE_INTERVAL,
    ) -> None:
        self.primary = primary
        self.standbys = standbys
        self.max_lag = max_lag
        self._primary_dsn = primary_dsn
        self._interval = min(probe_interval, max_lag / 4)
        # (monotonic start, WAL position) of the primary, oldest first.
        self._samples: collections.deque[tuple[float, int]] = collections.deque()
        self._next = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._metrics: list[Metrics] = []
        self._children: weakref.WeakKeyDictionary[Metrics, dict[str, Counter]] = (
            weakref.WeakKeyDictionary()
        )

    # -- life cycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the probes (one task per server)."""
        if not self._tasks:
            self._tasks.append(asyncio.create_task(self._probe_primary()))
            self._tasks += [asyncio.create_task(self._probe_standby(s)) for s in self.standbys]

    async def close(self) -> None:
        """Stop the probes and close the standbys' pools (not the primary's)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for standby in self.standbys:
            await _close(standby.probe)
            standby.probe = None
            await standby.pool.close()

    def terminate(self) -> None:
        """Stop at once, without waiting (:meth:`Pool.terminate`): cancel the probes, close
        the standbys' connections."""
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
        for standby in self.standbys:
            if standby.probe is not None:
                standby.probe.terminate()
                standby.probe = None
            standby.pool.terminate()

    def report_to(self, metrics: Metrics) -> None:
        """Also set ``metrics``' replica-lag gauge at every probe (and now, so that it holds a
        value from the start)."""
        if metrics not in self._metrics:
            self._metrics.append(metrics)
            for standby in self.standbys:
                self._report_lag(metrics, standby)

    def _report_lag(self, metrics: Metrics, standby: Standby) -> None:
        lag = self.lag(standby)
        metrics.replica_lag.labels(standby.name).set(math.inf if lag is None else lag)

    async def wait_ready(self, within: float = 10.0) -> bool:
        """Wait until every standby is up and caught up (tests, benchmarks); False on timeout."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if all(self.lag(s) == 0.0 for s in self.standbys):
                return True
            await asyncio.sleep(self._interval / 2)
        return False

    # -- routing --------------------------------------------------------------------------

    def lag(self, standby: Standby) -> float | None:
        """Seconds ``standby`` is behind (0 when it has replayed the newest primary sample);
        None while it is down or has not replayed any sample."""
        if not standby.up or standby.covered_at == NEVER:
            return None
        if self._samples and standby.covered_at >= self._samples[-1][0]:
            return 0.0
        return time.monotonic() - standby.covered_at

    def eligible(self, written_at: float = NEVER) -> list[Standby]:
        """The standbys that may serve a read now, round robin: within the lag bound and past
        the reader's last write."""
        floor = max(time.monotonic() - self.max_lag, written_at)
        standbys = self.standbys
        count = len(standbys)
        start = self._next
        self._next = (start + 1) % count if count else 0
        return [
            s for s in (standbys[(start + i) % count] for i in range(count)) if s.covered_at > floor
        ]

    async def read(
        self,
        method: ReadMethod,
        query: str,
        args: tuple[Any, ...],
        *,
        written_at: float = NEVER,
        metrics: Metrics | None = None,
    ) -> Any:
        """Run a read on an eligible standby (as :meth:`eligible` picks, inlined: this is
        every routed read's path); on a fault try the next one, then the primary."""
        standbys = self.standbys
        count = len(standbys)
        first = self._next
        self._next = first + 1 if first + 1 < count else 0
        floor = time.monotonic() - self.max_lag
        if written_at > floor:
            floor = written_at
        tried = False
        for i in range(count):
            standby = standbys[(first + i) % count]
            if standby.covered_at <= floor:
                continue
            tried = True
            result: Any
            try:
                if method == "fetch":
                    result = await standby.pool.fetch(query, *args)
                else:
                    result = await standby.pool.fetchrow(query, *args)
            except _FAULTS:
                self._mark_down(standby)
            except asyncpg.PostgresError as exc:
                state = (exc.sqlstate or "")[:2]
                if state not in _RETRYABLE_STATES:
                    raise
                if state != "40":
                    self._mark_down(standby)
            else:
                if metrics is not None:
                    self._counter(metrics, standby.name).inc()
                return result
            if metrics is not None:
                metrics.replica_fallbacks.labels("fault").inc()
        if metrics is not None:
            if not tried:
                metrics.replica_fallbacks.labels(self._why_not(written_at)).inc()
            self._counter(metrics, PRIMARY).inc()
        if method == "fetch":
            return await self.primary.fetch(query, *args)
        return await self.primary.fetchrow(query, *args)

    def _counter(self, metrics: Metrics, target: str) -> Counter:
        """``metrics``' read counter of ``target``, its labelled child kept (labels() costs
        microseconds a routed read should not pay)."""
        children = self._children.get(metrics)
        if children is None:
            children = self._children[metrics] = {}
        child = children.get(target)
        if child is None:
            child = children[target] = metrics.replica_reads.labels(target)
        return child

    def _why_not(self, written_at: float) -> str:
        """Why no standby qualified: all behind the reader's write, or none fresh enough."""
        floor = time.monotonic() - self.max_lag
        if any(s.covered_at > floor for s in self.standbys):
            return "read_your_writes"
        return "unavailable"

    def _mark_down(self, standby: Standby) -> None:
        standby.up = False
        standby.covered_at = NEVER

    # -- probes ---------------------------------------------------------------------------

    async def _probe_primary(self) -> None:
        """Sample the primary's WAL position every interval; keep the samples of the last
        ``max_lag`` seconds and more (older ones could only mark a standby too stale anyway),
        and at least the newest."""
        conn: asyncpg.Connection | None = None
        query = load_sql("replicas/primary_lsn")
        try:
            while True:
                started = time.monotonic()
                try:
                    if conn is None or conn.is_closed():
                        conn = await _connect(self._primary_dsn)
                    position = int(await conn.fetchval(query, timeout=PROBE_TIMEOUT))
                except (*_FAULTS, asyncpg.PostgresError):
                    await _close(conn)
                    conn = None
                else:
                    self._samples.append((started, position))
                    horizon = started - 2 * self.max_lag - 1
                    while len(self._samples) > 1 and self._samples[0][0] < horizon:
                        self._samples.popleft()
                await asyncio.sleep(max(0.0, self._interval - (time.monotonic() - started)))
        finally:
            await _close(conn)

    async def _probe_standby(self, standby: Standby) -> None:
        query = load_sql("replicas/standby_state")
        while True:
            started = time.monotonic()
            try:
                if standby.probe is None or standby.probe.is_closed():
                    standby.probe = await _connect(standby.dsn)
                row = await standby.probe.fetchrow(query, timeout=PROBE_TIMEOUT)
            except (*_FAULTS, asyncpg.PostgresError):
                await _close(standby.probe)
                standby.probe = None
                self._mark_down(standby)
            else:
                assert row is not None
                self._observe(standby, row["replayed"], bool(row["paused"]))
            for metrics in self._metrics:
                self._report_lag(metrics, standby)
            await asyncio.sleep(max(0.0, self._interval - (time.monotonic() - started)))

    def _observe(self, standby: Standby, replayed: int | None, paused: bool) -> None:
        """Move ``covered_at`` to the newest primary sample at or below the replay position."""
        standby.replayed, standby.paused = replayed, paused
        if replayed is None:  # not in recovery (promoted): not a standby of this primary
            self._mark_down(standby)
            return
        standby.up = True
        for started, position in reversed(self._samples):
            if position <= replayed:
                standby.covered_at = max(standby.covered_at, started)
                return


async def _connect(dsn: str) -> asyncpg.Connection:
    return await asyncpg.connect(
        dsn,
        timeout=PROBE_TIMEOUT,
        statement_cache_size=0,
        server_settings={"application_name": "acgs_db replica probe"},
    )


async def _close(conn: asyncpg.Connection | None) -> None:
    if conn is not None:
        conn.terminate()
