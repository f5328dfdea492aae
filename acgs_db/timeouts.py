"""Server-side timeouts of pool sessions, and the transaction-local override of long work.

Pool sessions run under ``statement_timeout`` (ACGS_STATEMENT_TIMEOUT) and
``idle_in_transaction_session_timeout`` (ACGS_IDLE_IN_TRANSACTION_TIMEOUT), set as server
settings of every connection (:func:`acgs_db.pool.pool_options`): a runaway statement is
cancelled by the server even when its client is gone, and a session left idle inside a
transaction is ended, releasing its locks. Work that is meant to run longer, a bulk insert's
COPY and the refresh, gives its own transaction its own bound with :func:`set_statement_timeout`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from acgs_db.resources import load_sql

if TYPE_CHECKING:
    from acgs_db.pool import AnyConnection

MAX_TIMEOUT_MS = 2_147_483_647
"""PostgreSQL's largest timeout setting (about 24.8 days); longer means none."""


def milliseconds(seconds: float | None) -> str:
    """A timeout setting's value: whole milliseconds (at least 1), ``"0"`` (no limit) for None,
    0 or anything beyond PostgreSQL's largest timeout."""
    if seconds is None or not seconds > 0:
        return "0"
    ms = max(1, round(seconds * 1000))
    return "0" if ms > MAX_TIMEOUT_MS else str(ms)


async def set_statement_timeout(conn: AnyConnection, seconds: float | None) -> None:
    """Bound the statements of ``conn``'s current transaction by ``seconds`` (None: no bound)
    instead of the session's ``statement_timeout``; call it inside the transaction."""
    await conn.execute(load_sql("queries/copy_timeout"), milliseconds(seconds))
