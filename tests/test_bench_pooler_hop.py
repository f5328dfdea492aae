"""``acgs-db bench pgbench --through-pgbouncer``: the same script directly and through a
PgBouncer of its own, end to end on a small data set (the figures exist and both runs did
their work; their timings are not judged)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from typer.testing import CliRunner

from acgs_db import schema
from acgs_db.bench.pgbench import RunOptions, ScriptName
from acgs_db.bench.pooler_hop import run_hop
from acgs_db.cli import app
from acgs_db.loader import LoadResult, load
from acgs_db.pool import create_pool
from acgs_db.settings import Settings
from acgs_db.synthetic import Workload

if TYPE_CHECKING:
    from conftest import Server

WORKLOAD = Workload(rows=5_000, tenants=5, days=2, decisions=20)
SETTINGS = Settings.from_env({})


@pytest.fixture(scope="module")
def hop_db(pg_server: Server) -> Iterator[str]:
    url = pg_server.create_database("acgs_hop")
    schema.upgrade(url)
    yield url
    pg_server.drop_database(url)


@pytest.fixture(scope="module")
async def loaded(hop_db: str) -> AsyncIterator[LoadResult]:
    pool = await create_pool(hop_db, min_size=1, max_size=2)
    try:
        yield await load(pool, WORKLOAD, settings=SETTINGS)
    finally:
        await pool.close()


def test_both_runs_do_their_work_and_the_second_goes_through_pgbouncer(
    hop_db: str, loaded: LoadResult
) -> None:
    options = RunOptions(script=ScriptName.HISTORY, clients=2, threads=1, duration=2)
    hop = run_hop(hop_db, options, settings=SETTINGS)
    for run in (hop.direct, hop.pooled):
        assert run.log.transactions > 0
        assert run.log.failures == 0
        assert run.options.protocol == "extended"
    assert hop.pooled_logins >= options.clients  # pgbench's clients logged in to PgBouncer
    data = hop.to_json()
    assert data["pgbouncer_version"].startswith("PgBouncer ")
    assert data["tps_ratio"] > 0
    assert data["direct"]["query_mode"] == data["pgbouncer"]["query_mode"] == "extended"


def test_the_command_prints_both_runs_and_the_ratio(
    hop_db: str, loaded: LoadResult, tmp_path: Path
) -> None:
    out = tmp_path / "hop.json"
    args = ["--script", "metrics", "--clients", "2", "--duration", "1", "--json", str(out)]
    result = CliRunner().invoke(
        app,
        ["bench", "pgbench", *args, "--through-pgbouncer"],
        env={"ACGS_DATABASE_URL": hop_db, "COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert "(direct, -M" in result.output  # rich wraps titles at the table's width
    assert "(pgbouncer, -M" in result.output
    assert "TPS ratio" in result.output
    data = json.loads(out.read_text())
    assert data["kind"] == "pgbench-pgbouncer-hop"
    assert data["pgbouncer"]["transactions"] > 0 and data["direct"]["transactions"] > 0
