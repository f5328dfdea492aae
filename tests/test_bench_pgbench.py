"""The pgbench wrapper against a real server: short real runs, the log parser on pgbench's own
output (failures, retries, skips), the scripts' fidelity to the repository's SQL, clear errors,
and the report of the seed's targets."""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from typer.testing import CliRunner

from acgs_db.bench import pgbench
from acgs_db.bench.pgbench import SCRIPTS, RunOptions, ScriptName
from acgs_db.bench.report import LOAD, TARGETS, Row, Target
from acgs_db.errors import AcgsDbError, ConfigurationError, SchemaNotReadyError
from acgs_db.pool import create_pool
from acgs_db.resources import load_sql
from acgs_db.settings import Settings
from acgs_db.tooling.cli import app
from acgs_db.tooling.loader import LoadResult, load
from acgs_db.tooling.synthetic import Workload, decision_hash, decision_name, tenant_name

WORKLOAD = Workload(rows=20_000, tenants=10, days=2, decisions=50)
SETTINGS = Settings.from_env({})
runner = CliRunner()


@pytest.fixture(scope="module")
async def loaded(module_database: str) -> AsyncIterator[LoadResult]:
    """The module's database, loaded by the loader (so ids follow acgs_db.tooling.synthetic)."""
    pool = await create_pool(module_database, min_size=1, max_size=2)
    try:
        yield await load(pool, WORKLOAD, settings=SETTINGS)
    finally:
        await pool.close()


@pytest.fixture
def url(module_database: str, loaded: LoadResult) -> str:
    return module_database


@pytest.fixture
def migrated_empty(migrated_database: str) -> str:
    return migrated_database


def _short(script: ScriptName) -> RunOptions:
    return RunOptions(script=script, clients=2, threads=1, duration=1)


# -- real runs ------------------------------------------------------------------------------


def test_a_short_run_writes_tps_percentiles_and_failures_as_json(url: str, tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    args = ["--script", "history", "--clients", "2", "--threads", "1", "--duration", "2"]
    result = runner.invoke(
        app,
        ["bench", "pgbench", *args, "--json", str(out)],
        env={"ACGS_DATABASE_URL": url},
    )
    assert result.exit_code == 0, result.output
    assert "latency p99 (ms)" in result.output

    data = json.loads(out.read_text())
    assert data["kind"] == "pgbench" and data["script"] == "history"
    assert (data["clients"], data["threads"], data["duration_s"], data["rate"]) == (2, 1, 2, None)
    assert data["transactions"] > 0 and data["failures"] == 0 and data["skipped"] == 0
    latency = data["latency_ms"]
    assert 0 < latency["min"] <= latency["p50"] <= latency["p95"] <= latency["p99"]
    assert latency["p99"] <= latency["max"]
    # The figures read from the log agree with pgbench's own summary.
    assert data["pgbench_reported"]["transactions"] == data["transactions"]
    assert data["tps"] == pytest.approx(data["pgbench_reported"]["tps"], rel=0.05)
    # What the run was measured on: the data, learnt through the ids, and the server.
    assert data["data"]["tenants"] == WORKLOAD.tenants
    assert WORKLOAD.decisions - 5 <= data["data"]["decisions"] <= WORKLOAD.decisions
    assert data["data"]["table_rows"] == WORKLOAD.rows
    assert data["data"]["cache_entries"] == WORKLOAD.tenants * WORKLOAD.decisions
    assert data["server_version"].startswith("15")
    assert data["machine"]["cpus"] >= 1


def test_one_client_runs_on_one_thread_unless_told_otherwise(url: str, tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    args = ["--script", "metrics", "--clients", "1", "--duration", "1", "--json", str(out)]
    result = runner.invoke(app, ["bench", "pgbench", *args], env={"ACGS_DATABASE_URL": url})
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert (data["clients"], data["threads"]) == (1, 1)


@pytest.mark.parametrize("script", list(ScriptName))
def test_every_script_runs_without_failures(url: str, script: ScriptName) -> None:
    result = pgbench.run(url, _short(script), settings=SETTINGS)
    assert result.log.transactions > 0
    assert result.log.failures == 0
    assert result.reported["transactions"] == result.log.transactions
    assert result.statements == SCRIPTS[script].statements


def test_the_mixed_script_writes_one_validation_per_transaction(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        before = _count(conn, "constitutional_validations")
        result = pgbench.run(url, _short(ScriptName.MIXED), settings=SETTINGS)
        after = _count(conn, "constitutional_validations")
        fresh = conn.execute(
            "SELECT count(*) FROM decision_validation_cache"
            " WHERE created_at > now() - interval '5 minutes'"
        ).fetchone()
    assert after - before == result.log.transactions > 0
    # The cache was made fresh before the run, so its look-ups hit (and upserts add none).
    assert fresh == (WORKLOAD.tenants * WORKLOAD.decisions,)


def test_a_fixed_rate_is_kept_and_its_schedule_lag_reported(url: str) -> None:
    options = RunOptions(ScriptName.HISTORY, clients=2, threads=1, duration=2, rate=100)
    data = pgbench.run(url, options, settings=SETTINGS).to_json()
    assert data["rate"] == 100
    assert 60 <= data["tps"] <= 140  # Poisson arrivals around 100/s
    assert data["lag_ms"] is not None and data["lag_ms"]["max"] >= data["lag_ms"]["p50"] >= 0
    assert data["failures"] == 0


# -- the log parser on pgbench's own output -------------------------------------------------


@pytest.fixture
def counter(url: str) -> Iterator[str]:
    """A one-row table that concurrent REPEATABLE READ updates fight over."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE bench_counter (id int PRIMARY KEY, n int NOT NULL)")
        conn.execute("INSERT INTO bench_counter VALUES (1, 0)")
        yield url
        conn.execute("DROP TABLE bench_counter")


CONFLICT_SCRIPT = """\
BEGIN ISOLATION LEVEL REPEATABLE READ;
UPDATE bench_counter SET n = n + 1 WHERE id = 1;
END;
"""


def _execute(url: str, script: Path, options: RunOptions) -> tuple[pgbench.TransactionLog, str]:
    variables = {"tenants": "1", "decisions": "1"}
    return pgbench.execute(pgbench.find_pgbench(), url, SETTINGS, script, options, variables)


def test_serialization_failures_are_counted_as_pgbench_counts_them(
    counter: str, tmp_path: Path
) -> None:
    script = tmp_path / "conflict.sql"
    script.write_text(CONFLICT_SCRIPT)
    options = RunOptions(clients=4, threads=2, duration=2)
    log, stdout = _execute(counter, script, options)
    summary = pgbench.parse_summary(stdout)
    assert log.serialization_failures > 0
    assert log.failures == log.serialization_failures == summary["failed"]
    assert log.transactions == summary["transactions"]


def test_retries_are_read_from_their_own_column(counter: str, tmp_path: Path) -> None:
    script = tmp_path / "conflict.sql"
    script.write_text(CONFLICT_SCRIPT)
    options = RunOptions(clients=4, threads=2, duration=2, max_tries=5)
    log, stdout = _execute(counter, script, options)
    assert log.retries >= log.retried > 0
    assert log.transactions == pgbench.parse_summary(stdout)["transactions"]


def test_transactions_skipped_by_the_latency_limit_are_counted(url: str, tmp_path: Path) -> None:
    script = tmp_path / "select.sql"
    script.write_text("SELECT 1;\n")
    # One client cannot run 20000 transactions a second: it falls behind and skips.
    options = RunOptions(clients=1, threads=1, duration=1, rate=20_000, latency_limit_ms=1)
    log, stdout = _execute(url, script, options)
    assert log.skipped > 0
    assert log.skipped == pgbench.parse_summary(stdout)["skipped"]
    assert len(log.lags_us) == log.transactions > 0


def test_percentiles_are_nearest_rank_values_in_milliseconds() -> None:
    figures = pgbench.Percentiles.of(list(range(100, 0, -1)))  # 1..100 microseconds
    assert figures is not None
    assert (figures.p50, figures.p95, figures.p99, figures.max) == (0.05, 0.095, 0.099, 0.1)
    assert (figures.min, figures.mean) == (0.001, 0.0505)
    assert pgbench.Percentiles.of([]) is None


def test_a_line_of_another_format_is_an_error() -> None:
    with pytest.raises(AcgsDbError, match="unexpected pgbench log line"):
        pgbench.parse_log(["0 1 250 0 1795698759 207271 12"])  # a lag field without --rate
    log = pgbench.parse_log(["0 1 250 0 1795698759 207271 12"], throttled=True)
    assert (log.transactions, log.lags_us) == (1, [12])


# -- the scripts are the repository's statements ---------------------------------------------

MIRRORS = {
    ScriptName.HISTORY: ["history"],
    ScriptName.DECISION: ["decision_scores"],
    ScriptName.METRICS: ["metrics"],
    ScriptName.CACHE: ["cache_get"],
    ScriptName.INSERT: ["insert"],
    ScriptName.MIXED: ["cache_get", "history", "insert", "cache_put"],
}


def _statements(script: ScriptName) -> list[str]:
    """The SQL statements of a pgbench script, without its comments and meta-commands."""
    lines = [
        line
        for line in SCRIPTS[script].path.read_text().splitlines()
        if not line.startswith(("--", "\\"))
    ]
    return [s.strip() for s in "\n".join(lines).split(";\n") if s.strip()]


def _flat(text: str) -> str:
    text = re.sub(r"--[^\n]*", "", text)
    return re.sub(r"\s+", " ", text).strip().rstrip(";").strip()


def _parameters(query: str, statement: str) -> dict[int, str]:
    """Match ``statement`` against ``query`` whose $n may stand for any expression (the same
    one wherever $n recurs); return each $n's expression, or fail."""
    pattern, seen = "", set()
    for part in re.split(r"(\$\d+)", _flat(query)):
        if re.fullmatch(r"\$\d+", part):
            n = int(part[1:])
            pattern += f"(?P=p{n})" if n in seen else f"(?P<p{n}>.+?)"
            seen.add(n)
        else:
            pattern += re.escape(part)
    match = re.fullmatch(pattern, _flat(statement))
    assert match, f"the script no longer matches sql/queries:\n{_flat(query)}\n{_flat(statement)}"
    return {int(k[1:]): v for k, v in match.groupdict().items()}


@pytest.mark.parametrize("script", list(ScriptName))
def test_each_script_runs_the_repository_statements(script: ScriptName) -> None:
    statements = _statements(script)
    assert len(statements) == len(MIRRORS[script]) == SCRIPTS[script].statements
    for query, statement in zip(MIRRORS[script], statements, strict=True):
        _parameters(load_sql(f"queries/{query}"), statement)


def test_the_scripts_name_the_loaders_tenants_decisions_and_cache_keys(url: str) -> None:
    """The id expressions of the mixed script, evaluated by the server, give synthetic's ids."""
    cache_get, history = _statements(ScriptName.MIXED)[:2]
    key = _parameters(load_sql("queries/cache_get"), cache_get)
    ids = _parameters(load_sql("queries/history"), history)
    expressions = {"tenant": ids[1], "decision": ids[2], "hash": key[2]}
    with psycopg.connect(url, autocommit=True) as conn:
        for t, k in ((0, 0), (3, 17), (9, 49)):
            row = conn.execute(
                sql.SQL("SELECT {}").format(
                    sql.SQL(", ").join(
                        sql.SQL(re.sub(r":([tk])\b", r"%(\1)s", expr))
                        for expr in expressions.values()
                    )
                ),
                {"t": t, "k": k},
            ).fetchone()
            assert row == (tenant_name(t), decision_name(t, k), decision_hash(t, k))


# -- clear errors ---------------------------------------------------------------------------


def _one_red_line(url: str) -> str:
    """What the CLI prints for a run it refuses (wide console: rich wraps at the width)."""
    result = runner.invoke(
        app,
        ["bench", "pgbench", "--duration", "1"],
        env={"ACGS_DATABASE_URL": url, "COLUMNS": "500"},
    )
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    return lines[0]


def test_an_empty_table_is_refused_in_one_line(migrated_empty: str) -> None:
    line = _one_red_line(migrated_empty)
    assert "constitutional_validations is empty" in line and "acgs-db load" in line


def test_an_unmigrated_database_is_refused_in_one_line(fresh_database: str) -> None:
    line = _one_red_line(fresh_database)
    assert "acgs-db migrate" in line
    with pytest.raises(SchemaNotReadyError):
        pgbench.run(fresh_database, _short(ScriptName.HISTORY), settings=SETTINGS)


def test_an_unreachable_database_is_refused_in_one_line() -> None:
    line = _one_red_line("postgresql://postgres@127.0.0.1:1/none")
    assert "cannot connect to the database" in line


def test_ids_the_loader_did_not_write_are_refused(migrated_empty: str) -> None:
    with psycopg.connect(migrated_empty, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO constitutional_validations (tenant_id, decision_id, compliance_score)"
            " VALUES ('acme', 'loan-42', 0.97)"
        )
    with pytest.raises(ConfigurationError, match="--tenants and --decisions"):
        pgbench.run(migrated_empty, _short(ScriptName.HISTORY), settings=SETTINGS)


def test_a_missing_pgbench_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigurationError, match="pgbench was not found"):
        pgbench.find_pgbench(debian_root=tmp_path)


def test_options_pgbench_would_refuse_are_refused_first() -> None:
    with pytest.raises(ConfigurationError, match="threads"):
        RunOptions(clients=2, threads=4).check()
    with pytest.raises(ConfigurationError, match="rate"):
        RunOptions(rate=0).check()


def _count(conn: psycopg.Connection, table: str) -> int:
    row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
    assert row is not None
    return int(row[0])


# -- the report -----------------------------------------------------------------------------


def test_the_report_runs_pgbench_and_judges_every_target(
    url: str, loaded: LoadResult, tmp_path: Path
) -> None:
    results = tmp_path / "results"
    out = tmp_path / "report.json"
    args = ["bench", "report", "--duration", "1", "--clients", "2", "--threads", "1"]
    env = {"ACGS_DATABASE_URL": url}
    ran = runner.invoke(app, [*args, "--results", str(results), "--json", str(out)], env=env)
    assert ran.exit_code == 0, ran.output
    assert sorted(p.name for p in results.iterdir()) == [
        "history-partition-baseline.json",
        "history.json",
        "mixed-r150.json",
        "mixed-r300.json",
        "mixed.json",
    ]
    report = json.loads(out.read_text())
    assert len(report["targets"]) == len(TARGETS)
    by_name = {row["target"]: row for row in report["targets"]}
    assert by_name["validations/s (COPY)"]["passed"] is None  # no load JSON yet
    measured = [row for row in report["targets"] if row["measured"] is not None]
    assert len(measured) == len(TARGETS) - 1
    for row in measured:
        assert row["ratio"] == pytest.approx(row["measured"] / row["bound"], abs=1e-3)
    mixed = json.loads((results / "mixed.json").read_text())
    assert by_name["operations/s"]["measured"] == pytest.approx(4 * mixed["tps"], rel=1e-3)
    baseline = json.loads((results / "history-partition-baseline.json").read_text())
    assert by_name["history / one partition"]["measured"] == baseline["tps_ratio"]
    assert "TPS over" in by_name["history / one partition"]["source"]

    # Reading the folder again, now with the loader's JSON beside the runs, runs nothing.
    (results / "load.json").write_text(json.dumps(loaded.to_json()))
    read = runner.invoke(app, ["bench", "report", "--no-run", "--results", str(results)])
    assert read.exit_code == 0, read.output
    assert "FAIL" in read.output or "pass" in read.output
    assert "n/a" not in read.output  # every target measured


def test_the_partition_baseline_runs_both_look_ups_and_prints_the_ratio(
    url: str, tmp_path: Path
) -> None:
    out = tmp_path / "baseline.json"
    args = ["--script", "history", "--clients", "2", "--threads", "1", "--duration", "1"]
    result = runner.invoke(
        app,
        ["bench", "pgbench", *args, "--partition-baseline", "--json", str(out)],
        env={"ACGS_DATABASE_URL": url},
    )
    assert result.exit_code == 0, result.output
    assert "history look-up / one partition" in result.output
    data = json.loads(out.read_text())
    assert data["kind"] == "pgbench-partition-baseline" and data["rounds"] == 3
    assert data["partition"].startswith("public.constitutional_validations_p")
    for side in ("walk", "one_partition"):
        assert all(run["transactions"] > 0 and run["failures"] == 0 for run in data[side])
    walk, one = data["median"]["walk"]["tps"], data["median"]["partition"]["tps"]
    assert data["tps_ratio"] == pytest.approx(walk / one, abs=1e-3)
    refused = runner.invoke(
        app,
        ["bench", "pgbench", "--script", "mixed", "--partition-baseline"],
        env={"ACGS_DATABASE_URL": url},
    )
    assert refused.exit_code != 0 and "history" in refused.output + refused.stderr


def test_the_one_partition_script_is_the_history_query_on_a_partition() -> None:
    from acgs_db.bench.partition_baseline import PLACEHOLDER, partition_script

    with tempfile.TemporaryDirectory() as folder:
        text = partition_script("public.p", Path(folder)).read_text()
    assert PLACEHOLDER not in text and "FROM public.p\n" in text
    raw = load_sql("bench/history_one_partition").replace(PLACEHOLDER, "public.p")
    body = [line for line in text.splitlines() if not line.startswith("\\")]
    assert _flat("\n".join(body)) == _flat(raw).replace(
        "$1", "'tenant-' || lpad(:t::text, 4, '0')"
    ).replace(
        "$2", "'decision-' || lpad(:t::text, 4, '0') || '-' || lpad(:k::text, 7, '0')"
    ).replace("$3", "'cdd01ef066bc6cf2'").replace("$4", "10")


def test_no_run_without_results_is_refused() -> None:
    result = runner.invoke(app, ["bench", "report", "--no-run"])
    assert result.exit_code == 1 and "--results" in result.stderr


def _target(metric: str) -> Target:
    return next(t for t in TARGETS if t.run == LOAD and t.metric == metric)


def test_a_latency_passes_only_below_its_bound() -> None:
    p99 = _target("p99")  # load P99 < 5 ms
    assert Row(p99, 4.99, "").passed is True
    assert Row(p99, 5.0, "").passed is False
    assert Row(p99, 2.5, "").ratio == 0.5
    assert Row(p99, None, "").passed is None


def test_a_rate_passes_within_its_tolerance() -> None:
    rate = _target("tps")  # load: 150/s, 5 % tolerance for Poisson arrivals
    assert Row(rate, 142.5, "").passed is True
    assert Row(rate, 142.0, "").passed is False
    assert Row(rate, 300.0, "").ratio == 2.0
