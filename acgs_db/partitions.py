"""Partition maintenance of ``constitutional_validations`` (pg_partman 4.7), with a report.

:func:`maintain` calls ``acgs_partition_maintenance()`` (migrations 0002, 0006, 0008), the
procedure pg_cron and ``scripts/partman-maintenance.sh`` call too: it moves the rows stranded in
the default partition into partitions of their own (``partman.partition_data_time``, one
partition per transaction), then runs ``partman.run_maintenance(<this table>)``, which keeps the
premade partitions ahead and drops those older than the retention, then gives new partitions
their planner statistics. Rows left in the default make every later maintenance run fail once
one of them lies in a partition maintenance wants to create, and rows older than every partition
escape retention for good, so the move comes first.

Every step runs under ``lock_timeout`` (``ACGS_LOCK_TIMEOUT``) and is retried with backoff
(``ACGS_LOCK_RETRIES`` times) when it times out, so that a long-running reader never makes every
other session queue behind maintenance; the report says how many retries it took, and the last
failure names the sessions holding locks on the table.

Rows older than the retention are moved like the others, and retention then drops their new
partition in the same run: they are deleted, as they would have been had they arrived in time.
The report says how many.

Then it seals the tamper-evident ledger's final entries into a block (``ledger_seal()``,
migration 0010), as the refresher does once per interval: the drop entries retention just wrote
are final once the run has committed, so the digest an operator takes after maintenance covers
them. A failed seal does not undo the maintenance: the report says why (``seal_error``).

The procedure COMMITs, so the call runs on an autocommit connection of its own, closed
afterwards. pg_partman's advisory lock is transaction-scoped in ``run_maintenance``; a session
whose own ``CALL partman.run_maintenance_proc()`` failed still keeps that procedure's
session-level lock, and meanwhile every other session's maintenance silently does nothing (the
report then names the session that holds it).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from acgs_db.constants import VALIDATIONS_TABLE
from acgs_db.errors import AcgsDbError, SchemaNotReadyError
from acgs_db.resources import load_sql
from acgs_db.settings import Settings

_TABLE_STATEMENT = re.compile(r'SQL statement "((?:ALTER|CREATE|DROP) TABLE [^"]*)"')
_MAINTENANCE_BUSY = "Partman maintenance already running"
_MOVE_BUSY = "partition_data_proc already running"
_RETRIES = re.compile(r"^acgs_partition_maintenance: lock retries: (\d+)$")


class MaintenanceError(AcgsDbError):
    """Partition maintenance failed on the server (what was committed before stays)."""


@dataclass(frozen=True, slots=True)
class MovedRows:
    """Rows moved out of the default partition into one partition."""

    partition: str
    rows: int
    first: datetime
    last: datetime
    kept: bool
    """False when retention dropped the partition in the same run: the rows are deleted."""


@dataclass(frozen=True, slots=True)
class MaintenanceReport:
    """What one maintenance run did."""

    parent: str
    retention: str | None
    created: tuple[str, ...]
    """Partitions that exist now and did not before (premade, or made for moved rows)."""
    dropped: tuple[str, ...]
    """Partitions that existed before and were dropped by retention."""
    moved: tuple[MovedRows, ...]
    default_rows_left: int
    ran_at: datetime
    duration_s: float
    skipped: str | None = None
    """Why pg_partman did nothing (another session holds its lock), else None."""
    notices: tuple[str, ...] = field(default=())
    lock_retries: int = 0
    """How many times a step hit the lock timeout and was tried again."""
    lock_timeout: float | None = None
    """The lock timeout of the run, seconds."""
    sealed_block: int | None = None
    """The ledger block sealed after the run (None: nothing final to seal, or it failed)."""
    sealed_entries: int = 0
    """How many ledger entries that block holds."""
    seal_error: str | None = None
    """Why sealing the ledger failed, else None (the maintenance itself stays done)."""

    @property
    def rows_moved(self) -> int:
        return sum(m.rows for m in self.moved)

    @property
    def rows_expired(self) -> int:
        """Moved rows whose new partition retention dropped at once: they are deleted."""
        return sum(m.rows for m in self.moved if not m.kept)

    def lines(self) -> list[str]:
        """The report as lines of text, the summary first."""
        kept = [m for m in self.moved if m.kept]
        expired = [m for m in self.moved if not m.kept]
        deleted = f" ({self.rows_expired} deleted by retention)" if expired else ""
        out = [
            f"maintained {self.parent} in {self.duration_s:.3f} s: "
            f"{_count(len(self.created), 'partition')} created, {len(self.dropped)} dropped, "
            f"{_count(self.rows_moved, 'row')} moved out of the default partition{deleted}"
        ]
        if self.skipped:
            out.append(f"skipped: {self.skipped}")
        if self.lock_retries:
            timeout = f" of {self.lock_timeout:g} s" if self.lock_timeout else ""
            out.append(
                f"waited for locks: {_count(self.lock_retries, 'retry')} after the lock"
                f" timeout{timeout} (another session held a lock on the table)"
            )
        out.extend(
            f"moved {_count(m.rows, 'row')} ({_span(m)}) into {m.partition}"
            + (" (dated in the future: check the writers' clocks)" if m.last > self.ran_at else "")
            for m in kept
        )
        out.extend(f"created {name}" for name in self.created)
        retention = f" ({self.retention})" if self.retention else ""
        out.extend(f"dropped {name}, older than the retention{retention}" for name in self.dropped)
        out.extend(
            f"deleted {_count(m.rows, 'row')} ({_span(m)}) older than the retention"
            f"{retention}: moved into {m.partition}, which retention then dropped"
            for m in expired
        )
        if self.default_rows_left:
            out.append(
                f"warning: {_count(self.default_rows_left, 'row')} still in the default "
                "partition (written during the run, or left to a concurrent run)"
            )
        if self.sealed_block is not None:
            entries = _count(self.sealed_entries, "entry")
            out.append(f"sealed ledger block {self.sealed_block}: {entries}")
        if self.seal_error:
            out.append(f"warning: sealing the ledger failed: {self.seal_error}")
        return out


def _count(n: int, noun: str) -> str:
    if n == 1:
        return f"{n} {noun}"
    return f"{n} {noun[:-1]}ies" if noun.endswith("y") else f"{n} {noun}s"


def _span(m: MovedRows) -> str:
    first, last = f"{m.first:%Y-%m-%d}", f"{m.last:%Y-%m-%d}"
    return first if first == last else f"{first} to {last}"


def parent_table(settings: Settings) -> str:
    """pg_partman's name of the validations table: ``<schema>.constitutional_validations``."""
    return f"{settings.schema}.{VALIDATIONS_TABLE}"


def maintenance_arguments(settings: Settings) -> dict[str, sql.Composable]:
    """The placeholders of ``sql/maintenance/maintain.sql``: the schema, ACGS_LOCK_TIMEOUT and
    ACGS_LOCK_RETRIES (also the pg_cron job's command, so they are literals)."""
    ms = max(1, round(settings.lock_timeout * 1000))  # whole milliseconds, as lock_timeout
    return {
        "schema": sql.Identifier(settings.schema),
        "lock_timeout": sql.Literal(f"{ms / 1000:g} s"),
        "retries": sql.Literal(settings.lock_retries),
    }


def maintain(url: str, settings: Settings | None = None) -> MaintenanceReport:
    """Run the partition maintenance of ``url``'s audit store and report what it did."""
    settings = settings or Settings.from_env()
    parent = parent_table(settings)
    notices: list[str] = []
    ran_at = datetime.now(UTC)
    started = time.perf_counter()
    try:
        with psycopg.connect(url, autocommit=True, application_name="acgs-db maintain") as conn:
            conn.add_notice_handler(_collect(notices))
            retention = _retention(conn, parent)
            before = _partitions(conn, parent)
            default = _default_partition(conn, parent)
            plan = _plan(conn, parent, default) if default else []
            conn.execute(
                sql.SQL(load_sql("maintenance/maintain")).format(**maintenance_arguments(settings))
            )
            after = _partitions(conn, parent)
            left = _default_count(conn, default) if default else 0
            skipped = _skipped(conn, notices)
            sealed, sealed_entries, seal_error = _seal(conn)
    except psycopg.Error as exc:
        raise MaintenanceError(_describe(exc)) from exc
    existing = set(after)
    moved = tuple(
        MovedRows(str(p), int(rows), first, last, str(p) in existing)
        for p, rows, first, last in plan
    )
    return MaintenanceReport(
        parent=parent,
        retention=retention,
        created=tuple(p for p in after if p not in before),
        dropped=tuple(p for p in before if p not in existing),
        moved=moved,
        default_rows_left=left,
        ran_at=ran_at,
        duration_s=time.perf_counter() - started,
        skipped=skipped,
        notices=tuple(notices),
        lock_retries=_lock_retries(notices),
        lock_timeout=settings.lock_timeout,
        sealed_block=sealed,
        sealed_entries=sealed_entries,
        seal_error=seal_error,
    )


def _seal(conn: psycopg.Connection[Any]) -> tuple[int | None, int, str | None]:
    """Seal the ledger's final entries (``ledger_seal()``): the block, its entry count, and
    the error's first line when sealing failed (the maintenance is committed either way)."""
    try:
        row = conn.execute(load_sql("ledger/seal")).fetchone()
    except psycopg.Error as exc:
        return None, 0, (exc.diag.message_primary or str(exc)).strip().splitlines()[0]
    if row is None:
        return None, 0, None
    return int(row[0]), int(row[1]), None


def _lock_retries(notices: Sequence[str]) -> int:
    """The procedure's count of retries after a lock timeout (its last NOTICE)."""
    counts = [int(m.group(1)) for n in notices if (m := _RETRIES.match(n))]
    return counts[-1] if counts else 0


def _collect(notices: list[str]) -> Callable[[psycopg.errors.Diagnostic], None]:
    def handler(diag: psycopg.errors.Diagnostic) -> None:
        notices.append(diag.message_primary or "")

    return handler


def _describe(exc: psycopg.Error) -> str:
    """The server's message on one line, with the table statement pg_partman stopped at.

    pg_partman re-raises errors with their CONTEXT folded into the message, so the statement
    is looked for in the message as well as in the context.
    """
    diag = exc.diag
    text = "\n".join(filter(None, [diag.message_primary, diag.context])) or str(exc)
    first = text.strip().splitlines()[0]
    statement = next((m.group(1) for m in _TABLE_STATEMENT.finditer(text)), None)
    where = f" (at {statement})" if statement else ""
    return f"partition maintenance failed: {first}{where}"


def _rows(
    conn: psycopg.Connection, query: sql.Composed | str, params: Mapping[str, Any]
) -> list[tuple[Any, ...]]:
    return conn.execute(query, params).fetchall()


def _retention(conn: psycopg.Connection, parent: str) -> str | None:
    try:
        rows = _rows(conn, load_sql("maintenance/retention"), {"parent": parent})
    except psycopg.errors.UndefinedTable:  # no pg_partman in this database
        rows = []
    if not rows:
        raise SchemaNotReadyError(
            f"pg_partman does not manage {parent}: run acgs-db migrate (alembic upgrade head)"
        )
    return None if rows[0][0] is None else str(rows[0][0])


def _partitions(conn: psycopg.Connection, parent: str) -> list[str]:
    return [str(r[0]) for r in _rows(conn, load_sql("maintenance/partitions"), {"parent": parent})]


def _default_partition(conn: psycopg.Connection, parent: str) -> sql.Identifier | None:
    rows = _rows(conn, load_sql("maintenance/default_partition"), {"parent": parent})
    return sql.Identifier(rows[0][0], rows[0][1]) if rows else None


def _plan(
    conn: psycopg.Connection, parent: str, default: sql.Identifier
) -> Sequence[tuple[Any, ...]]:
    query = sql.SQL(load_sql("maintenance/default_plan")).format(default_table=default)
    return _rows(conn, query, {"parent": parent})


def _default_count(conn: psycopg.Connection, default: sql.Identifier) -> int:
    query = sql.SQL(load_sql("maintenance/default_count")).format(default_table=default)
    row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0


def _skipped(conn: psycopg.Connection, notices: Sequence[str]) -> str | None:
    """Why pg_partman skipped part of its work, naming the sessions that hold its lock."""
    reasons = []
    if any(_MOVE_BUSY in n for n in notices):
        reasons.append("another session is moving the rows of the default partition")
    if any(_MAINTENANCE_BUSY in n for n in notices):
        holders = conn.execute(load_sql("maintenance/lock_holders")).fetchall()
        who = ", ".join(f"pid {pid} {app!r} {state}".rstrip() for pid, app, state in holders)
        reasons.append(
            "another session holds pg_partman's maintenance lock"
            + (f" ({who})" if who else "")
            + "; a session whose run failed keeps it until it disconnects"
        )
    return "; ".join(reasons) or None
