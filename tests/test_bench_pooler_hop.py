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

from acgs_db.bench.pgbench import RunOptions, ScriptName
from acgs_db.bench.pooler_hop import run_hop
from acgs_db.pool import create_pool
from acgs_db.settings import Settings
from acgs_db.tooling import schema
from acgs_db.tooling.cli import app
from acgs_db.tooling.loader import LoadResult, load
from acgs_db.tooling.synthetic import Workload

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
    options = RunOptions(script=ScriptName.HISTORY, clients=2, threads=1, duration=1)
    hop = run_hop(hop_db, options, settings=SETTINGS, rounds=2)
    assert len(hop.direct) == len(hop.pooled) == 2
    for run in (*hop.direct, *hop.pooled):
        assert run.log.transactions > 0
        assert run.log.failures == 0
        assert run.options.protocol == "extended"
    assert hop.pooled_logins >= 2 * options.clients  # pgbench's clients, each pooled round
    data = hop.to_json()
    assert data["pgbouncer_version"].startswith("PgBouncer ")
    assert data["rounds"] == 2
    assert data["ratio"]["tps"] > 0 and data["ratio"]["p50"] > 0
    assert data["median"]["direct"]["tps"] == hop.median("direct", "tps")
    assert {r["query_mode"] for r in data["direct"] + data["pgbouncer"]} == {"extended"}


def test_the_command_prints_every_round_and_the_ratio(
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
    assert "median" in result.output
    assert "TPS ratio" in result.output
    data = json.loads(out.read_text())
    assert data["kind"] == "pgbench-pgbouncer-hop" and data["rounds"] == 3
    assert all(run["transactions"] > 0 for run in data["direct"] + data["pgbouncer"])
