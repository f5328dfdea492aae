"""A throwaway database for benchmarks that write, empty and reshape data.

Benchmarks never touch the configured database's rows: they create ``acgs_bench_<random>`` on
the same server (the URL's role needs CREATEDB), migrate it to head, and drop it afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from acgs_db import schema


def url_for(url: str, database: str) -> str:
    """The same server and credentials, another database."""
    return urlunsplit(urlsplit(url)._replace(path="/" + database))


def url_as(url: str, user: str) -> str:
    """The same server and database, another role (no password: trust or ~/.pgpass)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{user}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


@contextmanager
def scratch_database(url: str, *, keep: bool = False) -> Iterator[str]:
    """Create and migrate a fresh database beside ``url``'s; yield its URL; drop it after."""
    name = f"acgs_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    target = url_for(url, name)
    try:
        schema.upgrade(target)
        yield target
    finally:
        if not keep:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
