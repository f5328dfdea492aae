"""The asyncpg connection pool: the seed's settings as defaults, codecs set once per connection."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg

from acgs_db.devdb import database_url
from acgs_db.records import JsonDocument
from acgs_db.settings import Settings

# Server-side TCP keepalives from the seed: a dead client is noticed within about 11 minutes.
KEEPALIVES = {
    "tcp_keepalives_idle": "600",
    "tcp_keepalives_interval": "30",
    "tcp_keepalives_count": "3",
}


def encode_jsonb(value: Any) -> bytes:
    """Binary jsonb: a version byte and UTF-8 JSON; checked documents pass through untouched."""
    if type(value) is JsonDocument:
        return value
    return b"\x01" + json.dumps(value, allow_nan=False, separators=(",", ":")).encode()


def decode_jsonb(data: bytes) -> Any:
    return json.loads(data[1:])


def decode_json(data: bytes) -> Any:
    return json.loads(data)


def encode_json(value: Any) -> bytes:
    return json.dumps(value, allow_nan=False, separators=(",", ":")).encode()


async def init_connection(conn: asyncpg.Connection) -> None:
    """Install the JSON codecs (binary, so that COPY can use them too)."""
    await conn.set_type_codec(
        "jsonb", encoder=encode_jsonb, decoder=decode_jsonb, schema="pg_catalog", format="binary"
    )
    await conn.set_type_codec(
        "json", encoder=encode_json, decoder=decode_json, schema="pg_catalog", format="binary"
    )


async def keep_session(conn: asyncpg.Connection) -> None:
    """Pool reset that sends nothing (asyncpg still rolls back an open transaction)."""


def pool_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments of :func:`asyncpg.create_pool` derived from the settings."""
    return {
        "min_size": settings.pool_min_size,
        "max_size": settings.pool_max_size,
        "command_timeout": settings.command_timeout,
        "statement_cache_size": settings.statement_cache_size,
        "server_settings": {
            "application_name": settings.application_name,
            "search_path": f'"{settings.schema}"',
            **KEEPALIVES,
        },
        "init": init_connection,
        # asyncpg resets every released connection with a query: a second round trip for
        # each sub-millisecond call. The repository leaves no session state (transaction-local
        # settings only), so by default the reset is skipped; ACGS_POOL_RESET=on restores it.
        **({} if settings.pool_reset else {"reset": keep_session}),
    }


async def create_pool(
    dsn: str | None = None, *, settings: Settings | None = None, **options: Any
) -> asyncpg.Pool:
    """Open a pool on ``dsn`` (default ``ACGS_DATABASE_URL``, else the embedded cluster).

    ``options`` override any :func:`asyncpg.create_pool` argument; ``server_settings`` are
    merged with the defaults rather than replacing them.
    """
    settings = settings or Settings.from_env()
    if dsn is None:
        dsn = await asyncio.to_thread(database_url, settings)
    kwargs = pool_options(settings)
    extra_server_settings = options.pop("server_settings", None) or {}
    kwargs["server_settings"] = {**kwargs["server_settings"], **extra_server_settings}
    kwargs.update(options)
    pool = await asyncpg.create_pool(dsn, **kwargs)
    assert pool is not None
    return pool
