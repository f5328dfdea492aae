"""The loader against a real server: what it writes (rows, tenants, decisions, time span), the
decision cache it fills, the statistics it gathers, the view it refreshes, and its command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, LiteralString

import psycopg
import pytest

from acgs_db.errors import ConfigurationError, SchemaNotReadyError
from acgs_db.pool import Pool, create_pool
from acgs_db.repository import ValidationRepository
from acgs_db.settings import Settings
from acgs_db.tooling.loader import PROGRESS_EVERY, LoadResult, check_workload, load
from acgs_db.tooling.synthetic import Workload, decision_hash, decision_name, tenant_name

WORKLOAD = Workload(rows=30_000, tenants=7, days=3, decisions=40)
SETTINGS = Settings.from_env({})


@dataclass
class Loaded:
    url: str
    result: LoadResult
    progress: list[int] = field(default_factory=list)
    phases: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
async def loaded(module_database: str) -> AsyncIterator[Loaded]:
    """WORKLOAD loaded in chunks of 7000 rows (so several COPY transactions)."""
    pool = await create_pool(module_database, min_size=1, max_size=2)
    progress: list[int] = []
    phases: list[str] = []
    try:
        result = await load(
            pool,
            WORKLOAD,
            settings=SETTINGS,
            commit_every=7_000,
            on_rows=progress.append,
            on_phase=phases.append,
        )
    finally:
        await pool.close()
    yield Loaded(module_database, result, progress, phases)


@pytest.fixture
def conn(loaded: Loaded) -> Iterator[psycopg.Connection]:
    with psycopg.connect(loaded.url, autocommit=True) as connection:
        yield connection


def _row(conn: psycopg.Connection, query: LiteralString) -> tuple[Any, ...]:
    row = conn.execute(query).fetchone()
    assert row is not None
    return row


def _one(conn: psycopg.Connection, query: LiteralString) -> Any:
    return _row(conn, query)[0]


# -- what is written ------------------------------------------------------------------------


def test_every_row_is_written_and_reported_as_it_goes(
    loaded: Loaded, conn: psycopg.Connection
) -> None:
    assert loaded.result.rows == WORKLOAD.rows
    assert _one(conn, "SELECT count(*) FROM constitutional_validations") == WORKLOAD.rows
    assert sum(loaded.progress) == WORKLOAD.rows
    assert max(loaded.progress) == PROGRESS_EVERY
    assert loaded.result.rows_per_second > 0
    assert loaded.phases == ["copy", "cache", "fold", "vacuum", "refresh"]


def test_rows_belong_to_the_loaders_tenants_and_decisions(
    conn: psycopg.Connection,
) -> None:
    tenants = {
        row[0] for row in conn.execute("SELECT DISTINCT tenant_id FROM constitutional_validations")
    }
    assert tenants == {tenant_name(i) for i in range(WORKLOAD.tenants)}
    names = {
        decision_name(t, k) for t in range(WORKLOAD.tenants) for k in range(WORKLOAD.decisions)
    }
    pairs = conn.execute(
        "SELECT DISTINCT tenant_id, decision_id FROM constitutional_validations"
    ).fetchall()
    assert {d for _, d in pairs} <= names
    # A decision belongs to one tenant: its name carries the tenant's number.
    assert all(d.split("-")[1] == t.split("-")[1] for t, d in pairs)
    # With ~107 validations per decision, every decision was validated.
    assert len(pairs) == len(names)


def test_rows_span_the_requested_days_up_to_now(
    conn: psycopg.Connection,
) -> None:
    oldest, newest, now = _row(
        conn, "SELECT min(created_at), max(created_at), now() FROM constitutional_validations"
    )
    minute = timedelta(minutes=1)
    assert now - timedelta(days=WORKLOAD.days) - minute <= oldest
    assert newest - oldest >= timedelta(days=WORKLOAD.days) - minute
    assert now - minute <= newest <= now + minute


def test_statistics_and_the_visibility_map_are_ready_for_the_planner(
    conn: psycopg.Connection,
) -> None:
    # The parent's statistics (what the planner uses for the partitioned table as a whole).
    inherited = _one(
        conn,
        "SELECT count(*) FROM pg_stats WHERE tablename = 'constitutional_validations'"
        " AND inherited",
    )
    assert inherited > 0
    # Every partition's row estimate and visibility map, as VACUUM (ANALYZE) leaves them.
    estimated, all_visible, pages = _row(
        conn,
        "SELECT sum(c.reltuples), sum(c.relallvisible), sum(c.relpages)"
        " FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'constitutional_validations'::regclass",
    )
    assert estimated == WORKLOAD.rows
    assert all_visible == pages > 0
    # The cache's statistics too.
    assert (
        _one(
            conn,
            "SELECT reltuples FROM pg_class WHERE relname = 'decision_validation_cache'",
        )
        == WORKLOAD.tenants * WORKLOAD.decisions
    )


def test_the_load_folds_its_own_rollup_deltas_so_no_backlog_is_left(
    loaded: Loaded, conn: psycopg.Connection
) -> None:
    assert loaded.result.folded_deltas > 0 and loaded.result.fold_seconds > 0
    assert _one(conn, "SELECT count(*) FROM validation_rollup_delta") == 0
    assert _row(conn, "SELECT * FROM rollup_backlog()") == (0, 0, None)
    # Every loaded row is counted once in the rollup's hourly totals.
    assert _one(conn, "SELECT sum(total) FROM rollup_totals_hour") == WORKLOAD.rows
    # The load's VACUUM (ANALYZE) took in the emptied delta queue too: its dead rows are gone
    # and its statistics say so (never vacuumed nor analyzed, reltuples would be -1).
    assert (
        _one(conn, "SELECT reltuples FROM pg_class WHERE relname = 'validation_rollup_delta'") == 0
    )


# -- the cache and the view -----------------------------------------------------------------


async def _repository(url: str) -> tuple[Pool, ValidationRepository]:
    pool = await create_pool(url, min_size=1, max_size=1)
    return pool, ValidationRepository(pool, SETTINGS)


async def test_the_cache_holds_a_fresh_entry_per_tenant_and_decision(loaded: Loaded) -> None:
    entries = WORKLOAD.tenants * WORKLOAD.decisions
    assert loaded.result.cache_entries == entries
    pool, repo = await _repository(loaded.url)
    try:
        assert await pool.fetchval("SELECT count(*) FROM decision_validation_cache") == entries
        for t, k in ((0, 0), (3, 17), (6, 39)):
            hit = await repo.get_cached_decision(tenant_name(t), decision_hash(t, k))
            assert hit is not None and 0.9 <= hit.validation_score <= 1
        assert await repo.get_cached_decision(tenant_name(0), decision_hash(0, 40)) is None
    finally:
        await pool.close()


async def test_the_24_hour_view_answers_after_the_load(loaded: Loaded) -> None:
    pool, repo = await _repository(loaded.url)
    try:
        metrics = await repo.tenant_metrics(tenant_name(2))
        last_day = await pool.fetchval(
            "SELECT count(*) FROM constitutional_validations"
            " WHERE tenant_id = $1 AND created_at >= now() - interval '24 hours'",
            tenant_name(2),
        )
    finally:
        await pool.close()
    assert metrics is not None and metrics.source == "view"
    assert metrics.total_validations == last_day > 0


# -- refusals -------------------------------------------------------------------------------


async def test_an_unmigrated_database_is_refused(fresh_database: str) -> None:
    pool = await create_pool(fresh_database, min_size=1, max_size=1)
    try:
        with pytest.raises(SchemaNotReadyError, match="acgs-db migrate"):
            await load(pool, Workload(rows=10), settings=SETTINGS)
    finally:
        await pool.close()


@pytest.mark.parametrize(
    ("workload", "complaint"),
    [
        (Workload(rows=0), "rows"),
        (Workload(rows=10, tenants=10_001), "tenants"),
        (Workload(rows=10, decisions=10_000_001), "decisions"),
        (Workload(rows=10, days=0), "days"),
        (Workload(rows=10, tenants=10_000, decisions=10_000), "cache entries"),
    ],
)
def test_shapes_the_benchmark_scripts_cannot_name_are_refused(
    workload: Workload, complaint: str
) -> None:
    with pytest.raises(ConfigurationError, match=complaint):
        check_workload(workload)


def test_a_large_shape_loads_without_the_cache() -> None:
    check_workload(Workload(rows=10, tenants=10_000, decisions=10_000), cache=False)


# -- the command ----------------------------------------------------------------------------


def _acgs_db(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ACGS_DATABASE_URL": url, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "acgs_db", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def test_the_load_command_writes_in_one_transaction_and_reports_rows_per_second(
    migrated_database: str, tmp_path: Path
) -> None:
    out = tmp_path / "load.json"
    args = ["--rows", "3000", "--tenants", "3", "--decisions", "10", "--days", "2"]
    done = _acgs_db(
        migrated_database, "load", *args, "--commit-every", "0", "--no-vacuum", "--json", str(out)
    )
    assert done.returncode == 0, done.stderr
    assert "wrote 3,000 validations" in done.stdout and "rows/s" in done.stdout

    data = json.loads(out.read_text())
    assert data["kind"] == "load"
    assert (data["rows"], data["tenants"], data["decisions"]) == (3000, 3, 10)
    assert data["commit_every"] is None and data["vacuumed"] is False
    assert data["cache_entries"] == 30 and data["rows_per_second"] > 0
    assert data["folded_deltas"] > 0 and "rollup delta rows in" in done.stdout
    with psycopg.connect(migrated_database, autocommit=True) as conn:
        assert _one(conn, "SELECT count(*) FROM constitutional_validations") == 3000
        # ANALYZE (without VACUUM) still gives the planner the parent's statistics.
        assert _one(
            conn,
            "SELECT count(*) > 0 FROM pg_stats"
            " WHERE tablename = 'constitutional_validations' AND inherited",
        )


def test_the_load_command_refuses_an_unmigrated_database_in_one_line(
    fresh_database: str,
) -> None:
    done = _acgs_db(fresh_database, "load", "--rows", "10")
    assert done.returncode == 1
    assert done.stderr.strip().startswith("error: ") and len(done.stderr.strip().splitlines()) == 1
    assert "acgs-db migrate" in done.stderr
