"""Reads from real streaming standbys: routing, bounded staleness, read-your-writes, faults.

A standby is a ``pg_basebackup -R`` copy of the harness's cluster (``StandbyCluster``, as
``dev-db start --replicas`` makes them); the tests pause its replay (``pg_wal_replay_pause()``),
kill and restart it, and read its own statistics to see which server answered.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from conftest import Server, start_throwaway_cluster

from acgs_db.errors import ConfigurationError
from acgs_db.metrics import Metrics
from acgs_db.partitions import maintain
from acgs_db.pool import Pool, create_pool
from acgs_db.records import ValidationRecord
from acgs_db.refresher import MetricsRefresher
from acgs_db.replicas import PRIMARY, ReplicaRouter
from acgs_db.repository import ValidationRepository
from acgs_db.settings import Settings
from acgs_db.tooling import schema
from acgs_db.tooling.devdb import DevCluster, StandbyCluster, replication_streams, standbys

REPLICA = "replica0"


@dataclass
class Replicated:
    """A migrated database on a primary, and the same database on a standby of it."""

    primary: DevCluster
    standby: StandbyCluster
    url: str
    standby_url: str


def _with_database(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + database))


@pytest.fixture(scope="module")
def replicated(pg_server: Server, template_database: str) -> Iterator[Replicated]:
    """A standby of the harness's own cluster (else of a cluster of this module's own) and a
    migrated database of this module on both."""
    own: DevCluster | None = None
    if pg_server.cluster is not None:
        primary = pg_server.cluster
        url = pg_server.clone_database(template_database, "acgs_replicas")
    else:  # the harness's server is not ours to copy: make one
        own = primary = start_throwaway_cluster()
        url = primary.admin_url("acgs_replicas")
        with psycopg.connect(primary.admin_url(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE acgs_replicas")
        schema.upgrade(url)
    standby = StandbyCluster(primary, 7)  # a number no dev-db default uses
    try:
        standby.start()
        database = urlsplit(url).path.lstrip("/")
        yield Replicated(primary, standby, url, _with_database(standby.admin_url(), database))
    finally:
        standby.destroy()
        if own is not None:
            own.destroy()
            shutil.rmtree(own.root.parent, ignore_errors=True)
        else:
            pg_server.drop_database(url)


def _settings(max_lag: float) -> Settings:
    return Settings.from_env({}, max_replica_lag=max_lag)


@pytest.fixture
async def replica_pool(replicated: Replicated) -> AsyncIterator[Pool]:
    """A pool on the primary with the standby as its replica (lag bound 30 s: only
    read-your-writes and faults move reads back to the primary)."""
    pool = await create_pool(
        replicated.url,
        replicas=[replicated.standby_url],
        settings=_settings(30.0),
        min_size=1,
        max_size=4,
    )
    router = _router(pool)
    assert await router.wait_ready(), "the standby never caught up"
    try:
        yield pool
    finally:
        await pool.close()


def _router(pool: Pool) -> ReplicaRouter:
    router = pool.replicas
    assert router is not None
    return router


def _reads(metrics: Metrics, target: str) -> float:
    value = metrics.registry.get_sample_value("acgs_db_replica_reads_total", {"target": target})
    return value or 0.0


def _fallbacks(metrics: Metrics, reason: str) -> float:
    value = metrics.registry.get_sample_value("acgs_db_replica_fallbacks_total", {"reason": reason})
    return value or 0.0


def _count(url: str, query: str, *params: str) -> int:
    """The one number ``query`` gives on ``url``."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(query, params or None).fetchone()
    assert row is not None
    return int(row[0])


def _scans(url: str) -> int:
    """Scans of the validations' partitions counted by this server's own statistics."""
    return _count(
        url,
        "SELECT coalesce(sum(seq_scan + coalesce(idx_scan, 0)), 0) FROM pg_stat_user_tables"
        " WHERE relname LIKE 'constitutional_validations%'",
    )


def _stored_on(url: str, tenant: str) -> int:
    return _count(
        url, "SELECT count(*) FROM constitutional_validations WHERE tenant_id = %s", tenant
    )


def _replay(url: str, *, paused: bool) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_wal_replay_pause()" if paused else "SELECT pg_wal_replay_resume()")


async def _until(check: Callable[[], object], within: float = 20.0) -> None:
    """Wait until ``check()`` holds."""
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.05)


# -- settings -------------------------------------------------------------------------------


def test_settings_read_replica_urls_and_check_the_lag_bound() -> None:
    settings = Settings.from_env(
        {
            "ACGS_REPLICA_URLS": " postgresql://a/x , ,postgres://b:5433/x ",
            "ACGS_MAX_REPLICA_LAG": "2.5",
        }
    )
    assert settings.replica_urls == ("postgresql://a/x", "postgres://b:5433/x")
    assert settings.max_replica_lag == 2.5
    assert Settings.from_env({}).replica_urls == ()
    assert Settings.from_env({}).max_replica_lag == 1.0
    for bad in ("0", "-1", "nan", "inf", "soon"):
        with pytest.raises(ConfigurationError, match="ACGS_MAX_REPLICA_LAG"):
            Settings.from_env({"ACGS_MAX_REPLICA_LAG": bad})
    with pytest.raises(ConfigurationError, match="ACGS_MAX_REPLICA_LAG"):
        Settings(max_replica_lag=0)
    with pytest.raises(ConfigurationError, match="ACGS_REPLICA_URLS"):
        Settings.from_env({"ACGS_REPLICA_URLS": "host=a dbname=x"})


# -- routing --------------------------------------------------------------------------------


async def test_reads_go_to_the_standby_and_everything_else_to_the_primary(
    replicated: Replicated, tenant: str
) -> None:
    metrics = Metrics()
    # Rows written by another writer (a standby may answer a reader that wrote nothing).
    with psycopg.connect(replicated.url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO constitutional_validations (tenant_id, decision_id, compliance_score)"
            " SELECT %s, 'd', 0.5 FROM generate_series(1, 3)",
            (tenant,),
        )
    await _until(lambda: _stored_on(replicated.standby_url, tenant) == 3)
    primary_before = _scans(replicated.url)
    standby_before = _scans(replicated.standby_url)
    pool = await create_pool(
        replicated.url,
        replicas=[replicated.standby_url],
        settings=_settings(30.0),
        min_size=1,
        max_size=4,
    )
    try:
        assert await _router(pool).wait_ready()
        repo = ValidationRepository(pool, _settings(30.0), metrics=metrics)
        for _ in range(10):
            assert len(await repo.history(tenant, "d")) == 3
        assert len(await repo.decision_scores("d")) >= 3
        figures = await repo.tenant_metrics(tenant)
        assert figures is not None and figures.total_validations == 3
        # The decision cache is UNLOGGED: it exists only on the primary, and works.
        await repo.cache_decision(tenant, "h", 0.9)
        cached = await repo.get_cached_decision(tenant, "h")
        assert cached is not None
        assert _reads(metrics, REPLICA) == 12
        assert _reads(metrics, PRIMARY) == 0
        lag = metrics.registry.get_sample_value("acgs_db_replica_lag_seconds", {"replica": REPLICA})
        assert lag is not None and lag < 30.0
    finally:
        await pool.close()  # the backends exit, flushing their statistics
    await _until(lambda: _scans(replicated.standby_url) >= standby_before + 11)
    assert _scans(replicated.url) == primary_before


async def test_an_idle_primary_does_not_make_the_standby_look_lagging(
    replicated: Replicated, tenant: str
) -> None:
    """With nothing written, the standby's last replayed commit grows old, yet it counts as
    caught up (lag 0 by WAL position) and serves reads past the lag bound."""
    metrics = Metrics()
    pool = await create_pool(
        replicated.url,
        replicas=[replicated.standby_url],
        settings=_settings(0.4),
        min_size=1,
        max_size=2,
    )
    try:
        router = _router(pool)
        assert await router.wait_ready()
        # Well past the 0.4 s bound with no write: wait for the standby's last replayed commit
        # to be that old (a background commit on the primary, e.g. of a job scheduler, restarts
        # the wait; seen once in a fresh-clone run: 0.28 s after a fixed 1.5 s sleep).
        row = None
        for _ in range(60):
            await asyncio.sleep(0.25)
            with psycopg.connect(replicated.standby_url, autocommit=True) as conn:
                row = conn.execute(
                    "SELECT extract(epoch FROM now() - pg_last_xact_replay_timestamp())"
                ).fetchone()
            if row is not None and row[0] is not None and float(row[0]) > 1.5:
                break
        assert row is not None and row[0] is not None and float(row[0]) > 0.4
        repo = ValidationRepository(pool, _settings(0.4), metrics=metrics)
        assert await repo.history(tenant, "d") == []
        assert _reads(metrics, REPLICA) == 1
        lag = router.lag(router.standbys[0])
        assert lag is not None and lag < 0.4
    finally:
        await pool.close()


async def test_a_paused_standby_serves_no_read_beyond_the_lag_bound(
    replicated: Replicated, tenant: str
) -> None:
    metrics = Metrics()
    pool = await create_pool(
        replicated.url,
        replicas=[replicated.standby_url],
        settings=_settings(0.5),
        min_size=1,
        max_size=2,
    )
    router = _router(pool)
    reader = ValidationRepository(pool, _settings(0.5), metrics=metrics)  # writes nothing
    try:
        assert await router.wait_ready()
        _replay(replicated.standby_url, paused=True)
        with psycopg.connect(replicated.url, autocommit=True) as conn:  # another writer
            conn.execute(
                "INSERT INTO constitutional_validations (tenant_id, decision_id, compliance_score)"
                " VALUES (%s, 'd', 0.5)",
                (tenant,),
            )
        await _until(lambda: router.eligible() == [])
        lag = router.lag(router.standbys[0])
        assert lag is not None and lag > 0.5
        assert len(await reader.history(tenant, "d")) == 1  # the primary answered
        assert _reads(metrics, PRIMARY) == 1
        assert _fallbacks(metrics, "unavailable") == 1
        assert _stored_on(replicated.standby_url, tenant) == 0  # the standby had not got it
        _replay(replicated.standby_url, paused=False)
        assert await router.wait_ready()
        assert len(await reader.history(tenant, "d")) == 1
        assert _reads(metrics, REPLICA) == 1
    finally:
        _replay(replicated.standby_url, paused=False)
        await pool.close()


async def test_read_your_writes_with_replay_paused(
    replicated: Replicated, replica_pool: Pool, tenant: str
) -> None:
    metrics = Metrics()
    router = _router(replica_pool)
    writer = ValidationRepository(replica_pool, _settings(30.0), metrics=metrics)
    try:
        _replay(replicated.standby_url, paused=True)
        await writer.insert(ValidationRecord(tenant, "d", 0.5))
        written = await writer.bulk_insert([ValidationRecord(tenant, "d", 0.7)] * 4)
        assert written == 4
        # Within the 30 s bound the standby may serve others, but not this writer: it has not
        # replayed the writes, so the primary answers, with every acknowledged row.
        assert router.eligible() != []
        assert len(await writer.history(tenant, "d")) == 5
        assert _reads(metrics, PRIMARY) == 1
        assert _fallbacks(metrics, "read_your_writes") == 1
        assert _stored_on(replicated.standby_url, tenant) == 0
        async with writer.audit_writer() as audit:
            await audit.write(ValidationRecord(tenant, "d", 0.9))
        assert len(await writer.history(tenant, "d")) == 6
        assert _reads(metrics, PRIMARY) == 2
        _replay(replicated.standby_url, paused=False)
        await _until(lambda: router.eligible(writer._written_at) != [])
        assert len(await writer.history(tenant, "d")) == 6
        assert _reads(metrics, REPLICA) == 1
    finally:
        _replay(replicated.standby_url, paused=False)


# -- faults ---------------------------------------------------------------------------------


async def test_a_standby_killed_mid_run_then_back(
    replicated: Replicated, replica_pool: Pool, tenant: str
) -> None:
    metrics = Metrics()
    router = _router(replica_pool)
    with psycopg.connect(replicated.url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO constitutional_validations (tenant_id, decision_id, compliance_score)"
            " SELECT %s, 'd', 0.5 FROM generate_series(1, 2)",
            (tenant,),
        )
    await _until(lambda: _stored_on(replicated.standby_url, tenant) == 2)
    assert await router.wait_ready()
    reader = ValidationRepository(replica_pool, _settings(30.0), metrics=metrics)
    stop = asyncio.Event()
    results: list[int] = []

    async def read_on() -> None:
        while not stop.is_set():
            results.append(len(await reader.history(tenant, "d")))

    readers = [asyncio.create_task(read_on()) for _ in range(3)]
    try:
        await _until(lambda: _reads(metrics, REPLICA) >= 20)
        await asyncio.to_thread(replicated.standby.kill)
        served = _reads(metrics, PRIMARY)
        await _until(lambda: _reads(metrics, PRIMARY) >= served + 20)
    finally:
        stop.set()
        await asyncio.gather(*readers)  # any error of a read surfaces here
    assert results and set(results) == {2}
    assert router.standbys[0].up is False
    assert router.lag(router.standbys[0]) is None
    assert _fallbacks(metrics, "unavailable") > 0
    # Back: once its probe answers and it has caught up, it serves again.
    await asyncio.to_thread(replicated.standby.start)
    assert await router.wait_ready(30.0)
    on_standby = _reads(metrics, REPLICA)
    assert len(await reader.history(tenant, "d")) == 2
    assert _reads(metrics, REPLICA) == on_standby + 1


async def test_a_standby_down_at_start_is_no_error_and_used_once_up(
    replicated: Replicated, tenant: str
) -> None:
    metrics = Metrics()
    await asyncio.to_thread(replicated.standby.stop)
    pool = await create_pool(
        replicated.url,
        replicas=[replicated.standby_url],
        settings=_settings(30.0),
        min_size=1,
        max_size=2,
    )
    try:
        repo = ValidationRepository(pool, _settings(30.0), metrics=metrics)
        assert await repo.history(tenant, "d") == []
        assert _reads(metrics, PRIMARY) == 1
        await asyncio.to_thread(replicated.standby.start)
        assert await _router(pool).wait_ready(30.0)
        assert await repo.history(tenant, "d") == []
        assert _reads(metrics, REPLICA) == 1
    finally:
        await pool.close()
        await asyncio.to_thread(replicated.standby.start)


def _sessions_on(url: str) -> int:
    """Client sessions on ``url``'s database other than this one."""
    return _count(
        url,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
    )


async def test_terminate_also_drops_the_standby_connections_and_stops_the_probes(
    replicated: Replicated, tenant: str
) -> None:
    pool = await create_pool(
        replicated.url,
        replicas=[replicated.standby_url],
        settings=_settings(30.0),
        min_size=1,
        max_size=2,
    )
    assert await _router(pool).wait_ready(30.0)
    await ValidationRepository(pool, _settings(30.0)).history(tenant, "d")
    assert await asyncio.to_thread(_sessions_on, replicated.standby_url) >= 1
    pool.terminate()
    await _until(lambda: _sessions_on(replicated.standby_url) == 0)


# -- the primary's jobs go on while the standby serves --------------------------------------


async def test_refresh_and_maintenance_run_on_the_primary_while_the_standby_serves_the_view(
    replicated: Replicated, replica_pool: Pool, tenant: str
) -> None:
    metrics = Metrics()
    router = _router(replica_pool)
    with psycopg.connect(replicated.url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO constitutional_validations"
            " (tenant_id, decision_id, compliance_score, processing_time_ms)"
            " SELECT %s, 'd', 0.5, 10 FROM generate_series(1, 4)",
            (tenant,),
        )
    refresher = MetricsRefresher(replica_pool, 60.0, settings=_settings(30.0), seal=False)
    assert (await refresher.refresh_once()).refreshed
    await _until(
        lambda: router.eligible() != [] and _stored_on(replicated.standby_url, tenant) == 4
    )
    assert await router.wait_ready()
    reader = ValidationRepository(replica_pool, _settings(30.0), metrics=metrics)
    stop = asyncio.Event()
    sources: list[str] = []

    async def read_on() -> None:
        while not stop.is_set():
            figures = await reader.tenant_metrics(tenant)
            assert figures is not None and figures.total_validations == 4
            sources.append(figures.source)
            await asyncio.sleep(0.01)

    task = asyncio.create_task(read_on())
    try:
        for _ in range(3):  # the refresh and the partition maintenance, on the primary
            assert (await refresher.refresh_once()).refreshed
        report = await asyncio.to_thread(maintain, replicated.url, _settings(30.0))
        assert report is not None
        await asyncio.sleep(0.3)
    finally:
        stop.set()
        await task
    assert sources and set(sources) == {"view"}
    assert _reads(metrics, REPLICA) == len(sources)
    assert _reads(metrics, PRIMARY) == 0


# -- dev-db --replicas ----------------------------------------------------------------------


def test_dev_db_start_replicas_url_status_stop(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    env = {**os.environ, "ACGS_DEV_DIR": str(tmp_path / "acgs")}
    env.pop("ACGS_DATABASE_URL", None)

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "acgs_db", "dev-db", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    try:
        primary_url = cli("start", "--replicas", "1")
        replica_url = cli("url", "--replica", "0")
        assert replica_url != primary_url
        with psycopg.connect(primary_url, autocommit=True) as conn:
            conn.execute("CREATE TABLE probe AS SELECT 42 AS answer")
        deadline = time.monotonic() + 30
        while True:
            with psycopg.connect(replica_url, autocommit=True) as conn:
                in_recovery = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                assert in_recovery == (True,)
                if conn.execute("SELECT to_regclass('probe')").fetchone() != (None,):
                    assert conn.execute("SELECT answer FROM probe").fetchone() == (42,)
                    break
            assert time.monotonic() < deadline, "the standby never replayed the table"
            time.sleep(0.1)
        lines = cli("status").splitlines()
        assert lines[0].startswith("running ")
        assert lines[1].startswith("replica 0 running ") and " lag " in lines[1]
        assert replica_url in lines[1]
        cli("stop")
        lines = cli("status").splitlines()
        assert lines[0].startswith("stopped ") and lines[1].startswith("replica 0 stopped ")
    finally:
        cluster = DevCluster(tmp_path / "acgs")
        for standby in standbys(cluster):
            standby.stop(mode="immediate")
        cluster.destroy()


def test_standby_streams_report_lag_by_slot(replicated: Replicated) -> None:
    streams = replication_streams(replicated.primary)
    assert replicated.standby.slot in streams
    status = replicated.standby.replica_status(streams)
    assert status.running and status.url is not None and status.index == 7
