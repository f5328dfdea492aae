"""Test harness: every test that touches data talks to a real PostgreSQL with the real extensions.

The server is, in order of preference: ``ACGS_TEST_DATABASE_URL`` (its server is used, with a
fresh database created per test session); testcontainers when a Docker engine answers
(``ACGS_TEST_IMAGE`` names an image with pg_partman and pg_cron); else a throwaway cluster
started from the local PostgreSQL binaries and removed at the end.

Migrations run once per session, into a template database (``template_database``); every
migrated database a test gets is a clone of it (``CREATE DATABASE ... TEMPLATE``): the session's
``database_url``, a module's ``module_database`` and a test's ``migrated_database``. Tests that
need a database without the schema (or migrate it themselves) take ``fresh_database``.
``ACGS_TEST_MIGRATE_EACH=1`` migrates every such database instead of cloning the template: the
harness before the template, kept to measure what the template saves (README, Tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql
from psycopg.abc import Params

from acgs_db.pool import AnyConnection, Pool, create_pool
from acgs_db.repository import ValidationRepository
from acgs_db.settings import Settings
from acgs_db.tooling import schema
from acgs_db.tooling.devdb import DevCluster


@dataclass
class Server:
    """A PostgreSQL server the tests may create databases on."""

    admin_url: str
    cluster: DevCluster | None = None

    def url_for(self, database: str) -> str:
        parts = urlsplit(self.admin_url)
        return urlunsplit(parts._replace(path="/" + database))

    def create_database(self, prefix: str = "acgs_test") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url_for(name)

    def clone_database(self, template: str, prefix: str = "acgs_test") -> str:
        """A new database copied from ``template`` (a database nobody is connected to)."""
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        source = urlsplit(template).path.lstrip("/")
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{source}"')
        return self.url_for(name)

    def drop_database(self, url: str) -> None:
        name = urlsplit(url).path.lstrip("/")
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# Connection parameters a login's URL keeps (libpq and asyncpg both read them).
_CARRIED = ("sslmode", "sslrootcert", "sslcert", "sslkey")


def create_login(conn: psycopg.Connection, name: str, *in_roles: str) -> str:
    """Create the LOGIN role ``name`` (a member of ``in_roles``) with a generated password and
    return the URL of ``conn``'s database as that role, password included: the servers ask
    for one (the embedded cluster authenticates everyone with SCRAM)."""
    password = secrets.token_urlsafe(24)
    query = sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
        sql.Identifier(name), sql.Literal(password)
    )
    if in_roles:
        groups = sql.SQL(", ").join(sql.Identifier(role) for role in in_roles)
        query = sql.SQL("{} IN ROLE {}").format(query, groups)
    conn.execute(query)
    info = conn.info
    extra = {k: v for k, v in info.get_parameters().items() if k in _CARRIED}
    host = info.host
    if host.startswith("/"):  # a unix socket folder goes into the query
        extra["host"], host = host, ""
    elif ":" in host:
        host = f"[{host}]"
    query_string = f"?{urlencode(extra)}" if extra else ""
    return (
        f"postgresql://{quote(name, safe='')}:{quote(password, safe='')}@{host}:{info.port}"
        f"/{quote(info.dbname, safe='')}{query_string}"
    )


def _docker_answers() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def start_throwaway_cluster() -> DevCluster:
    """A private cluster in a temporary folder (also used by fault tests that kill it)."""
    folder = Path(tempfile.mkdtemp(prefix="acgs-test-"))
    folder.chmod(0o755)  # under root the cluster runs as postgres, which must enter it
    root = folder / "cluster"
    cluster = DevCluster(root, config={"shared_buffers": "'256MB'"})
    cluster.start()
    return cluster


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Server]:
    url = os.environ.get("ACGS_TEST_DATABASE_URL")
    if url:
        yield Server(url)
        return
    if _docker_answers():
        from testcontainers.postgres import PostgresContainer

        image = os.environ.get("ACGS_TEST_IMAGE", "ghcr.io/dbsystel/postgresql-partman:15")
        with PostgresContainer(image, driver=None) as container:
            yield Server(container.get_connection_url())
        return
    cluster = start_throwaway_cluster()
    try:
        yield Server(cluster.admin_url(), cluster)
    finally:
        cluster.destroy()
        shutil.rmtree(cluster.root.parent, ignore_errors=True)


@pytest.fixture(scope="session")
def template_database(pg_server: Server) -> Iterator[str]:
    """A database migrated to head once per session, which the migrated databases copy.

    It refuses connections once migrated: CREATE DATABASE ... TEMPLATE fails while anyone is
    connected to the template. pg_partman's configuration and partitions come along with the
    copy; pg_cron's objects live in ``cron.database_name``, not here.
    """
    url = pg_server.create_database("acgs_template")
    schema.upgrade(url)
    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
    yield url
    pg_server.drop_database(url)


def _migrated(pg_server: Server, template: str, prefix: str) -> str:
    """A database migrated to head: a clone of ``template``, or with ACGS_TEST_MIGRATE_EACH=1
    a new database that the migrations run on."""
    if os.environ.get("ACGS_TEST_MIGRATE_EACH") == "1":
        url = pg_server.create_database(prefix)
        schema.upgrade(url)
        return url
    return pg_server.clone_database(template, prefix)


@pytest.fixture(scope="session")
def database_url(pg_server: Server, template_database: str) -> Iterator[str]:
    """A database migrated to head, shared by the test session."""
    url = _migrated(pg_server, template_database, "acgs_test")
    yield url
    pg_server.drop_database(url)


@pytest.fixture(scope="module")
def module_database(pg_server: Server, template_database: str) -> Iterator[str]:
    """A database migrated to head, shared by one test module, dropped after it."""
    url = _migrated(pg_server, template_database, "acgs_module")
    yield url
    pg_server.drop_database(url)


@pytest.fixture
def migrated_database(pg_server: Server, template_database: str) -> Iterator[str]:
    """A database migrated to head of this test's own, dropped after it."""
    url = _migrated(pg_server, template_database, "acgs_migrated")
    yield url
    pg_server.drop_database(url)


@pytest.fixture
def fresh_database(pg_server: Server) -> Iterator[str]:
    """An empty database of its own, dropped after the test."""
    url = pg_server.create_database("acgs_fresh")
    yield url
    pg_server.drop_database(url)


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection]:
    """A synchronous psycopg connection to the session database (autocommit)."""
    with psycopg.connect(database_url, autocommit=True) as connection:
        yield connection


@contextlib.asynccontextmanager
async def pool_on(url: str) -> AsyncIterator[Pool]:
    """The repository's own pool on ``url``; closing it fails the test that left a
    connection acquired."""
    p = await create_pool(url, min_size=1, max_size=10)
    yield p
    try:  # a connection never released would make close() wait forever
        await asyncio.wait_for(p.close(), timeout=30)
    except TimeoutError:
        p.terminate()
        raise AssertionError("a test left a pool connection acquired") from None


@pytest.fixture(scope="session")
async def pool(database_url: str) -> AsyncIterator[Pool]:
    """The repository's own pool on the session database."""
    async with pool_on(database_url) as p:
        yield p


@pytest.fixture
def repo(pool: Pool) -> ValidationRepository:
    """The repository on the session pool, with default settings."""
    return ValidationRepository(pool, Settings.from_env({}))


def bypass_append_only(
    conn: psycopg.Connection, statement: str, params: Params | None = None
) -> None:
    """Run an UPDATE or DELETE of validations as the tests' superuser, with the append-only
    trigger (migration 0010) disabled for that transaction only: the rollup's capture still
    fires, so its delete and update paths stay tested. Production code never does this."""
    with conn.transaction():
        conn.execute(
            "ALTER TABLE constitutional_validations"
            " DISABLE TRIGGER constitutional_validations_append_only"
        )
        conn.execute(statement, params)
        conn.execute(
            "ALTER TABLE constitutional_validations"
            " ENABLE TRIGGER constitutional_validations_append_only"
        )


def empty_store(conn: psycopg.Connection) -> None:
    """Empty the validations, the rollup (and its totals and bins) and the ledger (append-only:
    triggers bypassed)."""
    with conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute(
            "TRUNCATE constitutional_validations, validation_rollup, validation_rollup_delta,"
            " rollup_totals_hour, rollup_bins_day, rollup_bins_day_coarse, rollup_bins_hour,"
            " ledger_entries, ledger_blocks"
        )


async def count_rows(pool: Pool, tenant: str) -> int:
    """How many validations of ``tenant`` are stored."""
    return int(
        await pool.fetchval(
            "SELECT count(*) FROM constitutional_validations WHERE tenant_id = $1", tenant
        )
    )


@pytest.fixture
def tenant() -> str:
    """A tenant id no other test uses, so tests share the database without interfering."""
    return f"t-{uuid.uuid4().hex[:12]}"


async def prepare_part(
    conn: AnyConnection, tenant: str, token: uuid.UUID, part: int, *, ledger: bool
) -> None:
    """What a coordinator of a two-phase bulk insert leaves behind when it dies after PREPARE
    TRANSACTION: ten rows of ``tenant`` (and, for part 0, the batch's ledger row) prepared as
    part ``part`` of batch ``token``."""
    await conn.execute("BEGIN")
    await conn.execute(
        "INSERT INTO constitutional_validations (tenant_id, decision_id, compliance_score)"
        " SELECT $1, 'd', 0.5 FROM generate_series(1, 10)",
        tenant,
    )
    if ledger:
        await conn.execute(
            "INSERT INTO ingest_batches (batch_id, rows, parts, token) VALUES ($1, 20, 2, $2)",
            str(token),
            token,
        )
    await conn.execute(f"PREPARE TRANSACTION 'acgs_db:{token}:{part}'")


def oldest_partition_start(conn: psycopg.Connection) -> datetime:
    """Where the oldest partition pg_partman keeps for the validations begins."""
    row = conn.execute(
        """
        SELECT min(i.child_start_time)
        FROM partman.show_partitions('public.constitutional_validations', 'ASC') p,
             partman.show_partition_info(p.partition_schemaname || '.' || p.partition_tablename) i
        """
    ).fetchone()
    assert row is not None and row[0] is not None
    start: datetime = row[0]
    return start
