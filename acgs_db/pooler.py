"""What changes when the repository reaches PostgreSQL through PgBouncer (``ACGS_POOLER``).

:func:`acgs_db.pool.pool_options` sends no ``search_path`` behind PgBouncer (it refuses the
startup parameter), so every new connection checks with :func:`checked_schema` that names
resolve to the configured schema; :data:`MULTI_CONNECTION_COPY` says what the repository refuses
through a transaction pooler and why.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg

from acgs_db.errors import ConfigurationError
from acgs_db.resources import load_sql

MULTI_CONNECTION_COPY = (
    "bulk_insert(connections=N) through a transaction pooler (ACGS_POOLER=transaction) is "
    "refused: each of its N parts holds a server connection from BEGIN to PREPARE TRANSACTION, "
    "so writers doing it at once each hold some of PgBouncer's server connections while "
    "waiting for more, until query_wait_timeout fails them all; connect it directly (or "
    "through session pooling), or use connections=1"
)


async def checked_schema(
    conn: asyncpg.Connection, *, init: Callable[[asyncpg.Connection], Awaitable[None]], schema: str
) -> None:
    """Run ``init``, then make sure unqualified names resolve to ``schema``: behind PgBouncer
    the search path is the login's default (``ALTER ROLE ... SET search_path``), not ours."""
    await init(conn)
    current = await conn.fetchval(load_sql("queries/current_schema"))
    if current != schema:
        raise ConfigurationError(
            f"through the connection pooler, names resolve to schema {current!r}, not "
            f"{schema!r} (ACGS_SCHEMA): PgBouncer forwards no search_path, so make it the "
            f"login's default (ALTER ROLE <login> SET search_path = {schema})"
        )
