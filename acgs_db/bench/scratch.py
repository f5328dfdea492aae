"""A throwaway database for benchmarks that write, empty and reshape data.

Benchmarks never touch the configured database's rows: they create ``acgs_bench_<random>`` on
the same server (the URL's role needs CREATEDB), migrate it to head, and drop it afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql

from acgs_db.resources import load_sql
from acgs_db.tooling import schema


def url_for(url: str, database: str) -> str:
    """The same server and credentials, another database."""
    return urlunsplit(urlsplit(url)._replace(path="/" + database))


def url_as(url: str, user: str, password: str | None = None) -> str:
    """The same server and database, another role and its password (without one, libpq
    looks in ~/.pgpass). The URL's ``passfile`` is dropped: it holds the first role's."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host  # IPv6
    credentials = quote(user, safe="") + (f":{quote(password, safe='')}" if password else "")
    netloc = f"{credentials}@{host}" + (f":{parts.port}" if parts.port else "")
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k != "passfile"])
    return urlunsplit(parts._replace(netloc=netloc, query=query))


@contextmanager
def scratch_database(url: str, *, keep: bool = False) -> Iterator[str]:
    """Create and migrate a fresh database beside ``url``'s; yield its URL; drop it after."""
    name = f"acgs_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            sql.SQL(load_sql("bench/scratch_create")).format(database=sql.Identifier(name))
        )
    target = url_for(url, name)
    try:
        schema.upgrade(target)
        yield target
    finally:
        if not keep:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(
                    sql.SQL(load_sql("bench/scratch_drop")).format(database=sql.Identifier(name))
                )
