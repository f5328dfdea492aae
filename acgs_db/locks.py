"""Lock timeouts: recognise a statement that gave up waiting for a lock, back off, and name the
sessions it queued behind.

Migrations (``migrations/env.py``) and partition maintenance run their strong-lock statements
under ``lock_timeout`` (``ACGS_LOCK_TIMEOUT``): behind a long-running reader they give up after
that long instead of queueing, with every later reader and writer queued behind them. They
retry (``ACGS_LOCK_RETRIES``) after :func:`backoff`, and on the last failure say which sessions
held the locks (:func:`find_blockers`), not a bare "canceling statement due to lock timeout".
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg

from acgs_db.errors import AcgsDbError
from acgs_db.resources import load_sql

LOCK_NOT_AVAILABLE = "55P03"
"""SQLSTATE of a statement cancelled by ``lock_timeout`` (or a NOWAIT lock refused)."""
_LOCK_TIMEOUT_TEXT = "due to lock timeout"
_BACKOFF_BASE = 0.25
_BACKOFF_CAP = 10.0
_MAX_NAMED = 10


class LockTimeoutError(AcgsDbError):
    """A statement kept hitting the lock timeout: the message names the sessions holding locks."""

    def __init__(self, message: str, blockers: Sequence[Blocker] = ()) -> None:
        super().__init__(message)
        self.blockers = tuple(blockers)


@dataclass(frozen=True, slots=True)
class Blocker:
    """A session that held locks on the schema's relations when a statement gave up."""

    pid: int
    application_name: str
    state: str
    xact_age_s: float | None
    locks: tuple[str, ...]
    """``<mode> on <schema.relation>`` for each lock it held."""

    def describe(self) -> str:
        age = "" if self.xact_age_s is None else f", transaction {self.xact_age_s:.1f} s old"
        state = f" {self.state}" if self.state else ""
        return f"pid {self.pid} {self.application_name!r}{state}{age}, holding " + ", ".join(
            self.locks
        )


def is_lock_timeout(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps: SQLAlchemy's ``orig``, ``__cause__``) is a statement
    that gave up waiting for a lock: SQLSTATE 55P03, or pg_partman's re-raise of it, whose own
    SQLSTATE is P0001 but whose message keeps the original text."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, psycopg.Error):
            if current.sqlstate == LOCK_NOT_AVAILABLE:
                return True
            if _LOCK_TIMEOUT_TEXT in (current.diag.message_primary or ""):
                return True
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return False


def backoff(attempt: int, *, base: float = _BACKOFF_BASE, cap: float = _BACKOFF_CAP) -> float:
    """Seconds to wait before retry number ``attempt`` (0 first): exponential, capped, with
    jitter (x0.5 to x1.5) so that retrying sessions do not line up again."""
    return float(min(cap, base * 2 ** min(attempt, 30)) * random.uniform(0.5, 1.5))


def find_blockers(conn: psycopg.Connection, schema: str) -> list[Blocker]:
    """Other sessions holding granted locks on ``schema``'s relations, oldest transaction first
    (run on a connection other than the one that timed out)."""
    rows = conn.execute(load_sql("maintenance/lock_blockers"), {"schema": schema}).fetchall()
    found: dict[int, Blocker] = {}
    for pid, app, state, age, mode, relation in rows:
        lock = f"{mode} on {relation}"
        known = found.get(pid)
        if known is None:
            found[pid] = Blocker(int(pid), str(app), str(state), age, (lock,))
        elif lock not in known.locks:
            found[pid] = Blocker(
                known.pid,
                known.application_name,
                known.state,
                known.xact_age_s,
                (*known.locks, lock),
            )
    return list(found.values())


def lock_failure_message(
    what: str, attempts: int, timeout: float, blockers: Sequence[Blocker]
) -> str:
    """One line: what gave up, after how many attempts, and the sessions holding locks."""
    tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
    head = f"{what} gave up after {tries}: each waited {timeout:g} s (lock_timeout) for a lock"
    if not blockers:
        return head + "; no session holds a lock on the schema's tables any more"
    named = "; ".join(b.describe() for b in blockers[:_MAX_NAMED])
    more = f"; and {len(blockers) - _MAX_NAMED} more" if len(blockers) > _MAX_NAMED else ""
    return f"{head}; sessions holding locks: {named}{more}"
