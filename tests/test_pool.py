"""The pool: asyncpg's, with a cheap checkout that keeps connections between calls."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from acgs_db.pool import PoolOpening, create_pool
from acgs_db.settings import Settings


async def test_calls_reuse_held_connections_and_never_exceed_max_size(database_url: str) -> None:
    pool = await create_pool(database_url, min_size=1, max_size=3)
    try:
        pids = await asyncio.gather(*(pool.fetchval("SELECT pg_backend_pid()") for _ in range(50)))
        assert 1 <= len(set(pids)) <= 3
        again = {await pool.fetchval("SELECT pg_backend_pid()") for _ in range(10)}
        assert again <= set(pids)  # the same backends: no reconnect, no reset
    finally:
        await pool.close()


async def test_jsonb_codec_and_search_path_are_set_per_connection(database_url: str) -> None:
    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        assert await pool.fetchval("SELECT $1::jsonb", {"a": [1, "é"]}) == {"a": [1, "é"]}
        assert await pool.fetchval("SHOW application_name") == "acgs_constitutional_service"
        assert await pool.fetchval("SELECT current_schema()") == "public"
    finally:
        await pool.close()


async def test_a_transaction_left_open_is_rolled_back_before_reuse(database_url: str) -> None:
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        conn = await pool.acquire()
        await conn.execute("BEGIN")
        await conn.execute("CREATE TEMP TABLE left_open (x int)")
        await pool.release(conn)
        async with pool.acquire() as again:
            assert not again.is_in_transaction()
            assert await again.fetchval("SELECT to_regclass('pg_temp.left_open')") is None
    finally:
        await pool.close()


async def test_a_server_error_keeps_the_connection_and_a_cancelled_call_replaces_it(
    database_url: str,
) -> None:
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        pid = await pool.fetchval("SELECT pg_backend_pid()")
        with pytest.raises(asyncpg.DivisionByZeroError):
            await pool.fetchval("SELECT 1 / 0")
        assert await pool.fetchval("SELECT pg_backend_pid()") == pid
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(pool.execute("SELECT pg_sleep(5)"), timeout=0.2)
        assert await pool.fetchval("SELECT 41 + 1") == 42  # served, on a sound connection
    finally:
        await pool.close()


async def test_pool_reset_on_gives_every_call_asyncpgs_checkout(database_url: str) -> None:
    pool = await create_pool(
        database_url, settings=Settings.from_env({"ACGS_POOL_RESET": "on"}), min_size=1, max_size=1
    )
    try:
        async with pool.acquire() as conn:
            await conn.execute("SET application_name = 'changed'")
        assert await pool.fetchval("SHOW application_name") == "acgs_constitutional_service"
    finally:
        await pool.close()


async def _sessions(database_url: str, application_name: str, *, until: int | None = None) -> int:
    """Server sessions of ``application_name``; with ``until``, polled (5 s at most) until
    there are that many (a closed connection's backend exits just after the client goes)."""
    conn = await asyncpg.connect(database_url)
    try:
        for _ in range(50):
            count: int = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                application_name,
            )
            if until is None or count == until:
                break
            await asyncio.sleep(0.1)
        return count
    finally:
        await conn.close()


async def test_async_with_create_pool_closes_the_pool_when_the_block_ends(
    database_url: str,
) -> None:
    name = "acgs_pool_block"

    def opening() -> PoolOpening:
        return create_pool(
            database_url, min_size=2, max_size=2, server_settings={"application_name": name}
        )

    async with opening() as pool:
        assert await pool.fetchval("SHOW application_name") == name
        assert await pool.fetchval("SELECT current_schema()") == "public"  # defaults kept
        assert await _sessions(database_url, name) == 2
    assert pool.asyncpg_pool.is_closing()
    assert await _sessions(database_url, name, until=0) == 0

    with pytest.raises(asyncpg.DivisionByZeroError):
        async with opening() as pool:
            assert await _sessions(database_url, name) == 2
            await pool.fetchval("SELECT 1 / 0")
    assert pool.asyncpg_pool.is_closing()
    assert await _sessions(database_url, name, until=0) == 0

    async with await opening() as pool:  # an open pool, too
        assert await pool.fetchval("SELECT 41 + 1") == 42
        assert await _sessions(database_url, name) == 2
    assert pool.asyncpg_pool.is_closing()
    assert await _sessions(database_url, name, until=0) == 0
