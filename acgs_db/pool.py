"""The asyncpg connection pool: the seed's settings as defaults, codecs set once per connection."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Generator, Sequence
from typing import Any, Protocol, TypeAlias, TypedDict, TypeVar, Unpack

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from acgs_db.jsoncodec import decode_json, decode_jsonb, encode_json, encode_jsonb
from acgs_db.pooler import checked_schema
from acgs_db.replicas import ReplicaRouter, Standby
from acgs_db.settings import Settings
from acgs_db.timeouts import milliseconds

PooledConnection: TypeAlias = PoolConnectionProxy
"""A connection :class:`Pool` lends: asyncpg's proxy of a connection of its pool."""
AnyConnection: TypeAlias = asyncpg.Connection | PoolConnectionProxy
"""A lent connection, or one opened directly (``asyncpg.connect``)."""
T = TypeVar("T")

# Server-side TCP keepalives from the seed: a dead client is noticed within about 11 minutes.
KEEPALIVES = {
    "tcp_keepalives_idle": "600",
    "tcp_keepalives_interval": "30",
    "tcp_keepalives_count": "3",
}


async def init_connection(conn: asyncpg.Connection) -> None:
    """Install the JSON codecs (binary, so that COPY can use them too)."""
    await conn.set_type_codec(
        "jsonb", encoder=encode_jsonb, decoder=decode_jsonb, schema="pg_catalog", format="binary"
    )
    await conn.set_type_codec(
        "json", encoder=encode_json, decoder=decode_json, schema="pg_catalog", format="binary"
    )


class _InitConnection(Protocol):
    """What asyncpg runs on each new connection (``init``)."""

    async def __call__(self, conn: asyncpg.Connection, /) -> None: ...


class PoolOptions(TypedDict, total=False):
    """Arguments of :func:`asyncpg.create_pool` that :func:`pool_options` derives from the
    settings, or that a caller of :func:`create_pool` may give."""

    min_size: int
    max_size: int
    max_queries: int
    max_inactive_connection_lifetime: float
    command_timeout: float | None
    statement_cache_size: int
    server_settings: dict[str, str]
    init: _InitConnection
    timeout: float


def pool_options(settings: Settings) -> PoolOptions:
    """Keyword arguments of :func:`asyncpg.create_pool` derived from the settings.

    Behind PgBouncer (``ACGS_POOLER``), only ``application_name`` is sent at startup: PgBouncer
    1.18 refuses any startup parameter it does not track (``search_path``, keepalives), so the
    schema must be the login's default ``search_path``, which each new connection checks. In
    transaction pooling the statement cache is off: asyncpg then sends every statement unnamed,
    parsed again in the same round trip as its execution, which any server connection can run.
    """
    pooled = settings.pooler != "none"
    server_settings = {"application_name": settings.application_name}
    if not pooled:
        server_settings |= {
            "search_path": f'"{settings.schema}"',
            # Server-side bounds (the client's command_timeout cannot cancel a statement whose
            # client is gone, nor end a session idling in a transaction with locks held).
            # Behind PgBouncer, give them to the login instead (ALTER ROLE ... SET).
            "statement_timeout": milliseconds(settings.statement_timeout),
            "idle_in_transaction_session_timeout": milliseconds(
                settings.idle_in_transaction_timeout
            ),
            **KEEPALIVES,
        }
    return {
        "min_size": settings.pool_min_size,
        "max_size": settings.pool_max_size,
        "command_timeout": settings.command_timeout,
        "statement_cache_size": (
            0 if settings.pooler == "transaction" else settings.statement_cache_size
        ),
        "server_settings": server_settings,
        "init": (
            functools.partial(checked_schema, init=init_connection, schema=settings.schema)
            if pooled
            else init_connection
        ),
    }


def create_pool(
    dsn: str | None = None,
    *,
    replicas: Sequence[str] | None = None,
    settings: Settings | None = None,
    **options: Unpack[PoolOptions],
) -> PoolOpening:
    """Open a pool on ``dsn`` (default ``ACGS_DATABASE_URL``, else the embedded cluster):
    ``pool = await create_pool()`` (then ``await pool.close()``), or
    ``async with create_pool() as pool:``, which closes it on the way out.

    ``replicas``: libpq URLs of hot standbys of ``dsn`` (default ``ACGS_REPLICA_URLS``; ``[]``
    for none) that the repository reads from (see :mod:`acgs_db.replicas`); each gets a pool
    with the same options, which connects lazily so that a standby down at start is no error.

    ``options`` override :func:`asyncpg.create_pool`'s arguments; ``server_settings`` are
    merged with the defaults rather than replacing them.
    """
    return PoolOpening(dsn, replicas, settings, options)


class PoolOpening:
    """What :func:`create_pool` returns: awaited, the open :class:`Pool`; used with
    ``async with``, the pool for the block, closed when it ends (as asyncpg's own pool)."""

    def __init__(
        self,
        dsn: str | None,
        replicas: Sequence[str] | None,
        settings: Settings | None,
        options: PoolOptions,
    ):
        self._dsn = dsn
        self._replicas = replicas
        self._settings = settings
        self._options = options
        self._pool: Pool | None = None

    def __await__(self) -> Generator[Any, None, Pool]:
        return _open_pool(self._dsn, self._replicas, self._settings, self._options).__await__()

    async def __aenter__(self) -> Pool:
        self._pool = await self
        return self._pool

    async def __aexit__(self, *_: object) -> None:
        pool, self._pool = self._pool, None
        assert pool is not None
        await pool.close()


async def _open_pool(
    dsn: str | None,
    replicas: Sequence[str] | None,
    settings: Settings | None,
    options: PoolOptions,
) -> Pool:
    settings = settings or Settings.from_env()
    if dsn is None:
        dsn = settings.database_url
    if not dsn:
        # No URL anywhere: the embedded development cluster (started if needed). Imported here
        # so that the library never loads the operator's tooling when a URL is given.
        from acgs_db.tooling.devdb import database_url

        dsn = await asyncio.to_thread(database_url, settings)
    kwargs = pool_options(settings)
    server_settings = {**kwargs["server_settings"], **(options.get("server_settings") or {})}
    kwargs.update(options)
    kwargs["server_settings"] = server_settings
    pool = await asyncpg.create_pool(dsn, **kwargs)
    assert pool is not None
    primary = Pool(pool, kwargs["max_size"], reuse=not settings.pool_reset)
    urls = settings.replica_urls if replicas is None else tuple(replicas)
    if urls:
        standbys: list[Standby] = []
        try:
            for index, url in enumerate(urls):
                lazy_options: PoolOptions = {**kwargs, "min_size": 0}
                lazy = await asyncpg.create_pool(url, **lazy_options)
                assert lazy is not None
                standby_pool = Pool(lazy, kwargs["max_size"], reuse=not settings.pool_reset)
                standbys.append(Standby(f"replica{index}", standby_pool, url))
        except BaseException:  # e.g. a malformed URL: close what was opened
            for standby in standbys:
                await standby.pool.close()
            await primary.close()
            raise
        primary.replicas = ReplicaRouter(primary, dsn, standbys, max_lag=settings.max_replica_lag)
        primary.replicas.start()
    return primary


class Pool:
    """asyncpg's pool with a cheap checkout for the repository's short statements.

    Measured here with 8 concurrent callers of ``SELECT 1``: raw connections 15,400/s,
    ``asyncpg.Pool.fetchval`` 6,700/s, a queue of held connections 11,500/s. asyncpg's
    checkout costs a task (``asyncio.shield``) and a reset query per release; this one lends
    connections it keeps from asyncpg's pool through a queue of ``max_size`` slots and hands a
    connection back to asyncpg (which resets or replaces it) only after an error, a
    cancellation or a transaction left open. Connections therefore keep session state between
    calls: change it only with ``SET LOCAL``/``set_config(..., true)``, or set
    ``ACGS_POOL_RESET=on`` to use asyncpg's checkout and reset for every call.

    ``async with pool:`` closes it when the block ends. Anything else of asyncpg's pool
    (``get_size``, ``expire_connections``...) is reached through :attr:`asyncpg_pool`.
    """

    def __init__(self, pool: asyncpg.Pool, size: int, *, reuse: bool = True) -> None:
        self._pool = pool
        self._reuse = reuse
        self.replicas: ReplicaRouter | None = None
        """Where the repository's reads may go (``create_pool(replicas=...)``); None: here."""
        self._slots: asyncio.LifoQueue[PooledConnection | None] = asyncio.LifoQueue()
        for _ in range(size):
            self._slots.put_nowait(None)

    @property
    def asyncpg_pool(self) -> asyncpg.Pool:
        return self._pool

    async def _lend(self) -> PooledConnection:
        conn = await self._slots.get()
        try:
            if conn is not None:
                if _usable(conn):
                    return conn
                await self._discard(conn)
            return await self._pool.acquire()
        except BaseException:
            self._slots.put_nowait(None)
            raise

    async def _return(self, conn: PooledConnection, healthy: bool) -> None:
        """Back into its slot; to asyncpg's pool (reset or replaced) when it may be unwell."""
        if healthy and self._reuse and _usable(conn) and not conn.is_in_transaction():
            self._slots.put_nowait(conn)
            return
        try:
            await asyncio.shield(self._discard(conn))
        finally:
            self._slots.put_nowait(None)

    async def _discard(self, conn: PooledConnection) -> None:
        """Hand a connection back to asyncpg's pool, which resets or replaces it. A connection
        lost with its server was already taken back by asyncpg (its proxy is detached)."""
        with contextlib.suppress(asyncpg.InterfaceError):
            await self._pool.release(conn)

    async def _call(self, run: Callable[[PooledConnection], Awaitable[T]]) -> T:
        """``run`` on a lent connection, given back healthy unless ``run`` failed other than
        by a server error."""
        conn = await self._lend()
        healthy = False
        try:
            result = await run(conn)
            healthy = True
            return result
        except asyncpg.PostgresError:
            healthy = True  # the server answered: the connection is fine
            raise
        finally:
            await self._return(conn, healthy)

    async def fetch(
        self, query: str, *args: object, timeout: float | None = None
    ) -> list[asyncpg.Record]:
        return await self._call(lambda conn: conn.fetch(query, *args, timeout=timeout))

    async def fetchrow(
        self, query: str, *args: object, timeout: float | None = None
    ) -> asyncpg.Record | None:
        return await self._call(lambda conn: conn.fetchrow(query, *args, timeout=timeout))

    async def fetchval(
        self, query: str, *args: object, column: int = 0, timeout: float | None = None
    ) -> Any:
        """The value of ``column`` in the first row (None without rows): any SQL type."""
        return await self._call(
            lambda conn: conn.fetchval(query, *args, column=column, timeout=timeout)
        )

    async def execute(self, query: str, *args: object, timeout: float | None = None) -> str:
        return await self._call(lambda conn: conn.execute(query, *args, timeout=timeout))

    def acquire(self) -> _Checkout:
        """``async with pool.acquire() as conn`` or ``conn = await pool.acquire()`` (then
        :meth:`release`), as with asyncpg's pool."""
        return _Checkout(self)

    async def release(self, conn: PooledConnection) -> None:
        """Give back a connection from ``await acquire()``; an open transaction is rolled back
        by asyncpg's pool."""
        await self._return(conn, healthy=True)

    async def close(self) -> None:
        if self.replicas is not None:
            await self.replicas.close()
        while not self._slots.empty():
            conn = self._slots.get_nowait()
            if conn is not None:
                await self._discard(conn)
        await self._pool.close()

    async def __aenter__(self) -> Pool:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    def terminate(self) -> None:
        """Close every connection at once, without waiting (asyncpg's ``terminate``), the
        standbys' too."""
        if self.replicas is not None:
            self.replicas.terminate()
        self._pool.terminate()


def _usable(conn: PooledConnection) -> bool:
    """Open, and still ours: asyncpg detaches the proxy of a connection it took back."""
    try:
        return not conn.is_closed()
    except asyncpg.InterfaceError:
        return False


class _Checkout:
    def __init__(self, pool: Pool) -> None:
        self._pool = pool
        self._conn: PooledConnection | None = None

    def __await__(self) -> Generator[Any, None, PooledConnection]:
        return self._pool._lend().__await__()

    async def __aenter__(self) -> PooledConnection:
        self._conn = await self._pool._lend()
        return self._conn

    async def __aexit__(self, kind: type[BaseException] | None, *_: object) -> None:
        conn, self._conn = self._conn, None
        assert conn is not None
        healthy = kind is None or issubclass(kind, asyncpg.PostgresError)
        await self._pool._return(conn, healthy)
