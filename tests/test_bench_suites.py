"""The repository, refresh and ledger benchmarks run end to end on a small scale: every figure is
produced, and the exactness checks they make hold (their timings are not judged here)."""

from __future__ import annotations

import subprocess
import sys

from conftest import Server

from acgs_db.bench import ledger, metrics, repository, rollup


def test_the_repository_benchmark_measures_every_figure(pg_server: Server) -> None:
    options = repository.Options(
        rows=5000,
        rounds=1,
        executemany_rows=500,
        memory_rows=5000,
        calls=200,
        seconds=0.5,
        pgbench_seconds=1,
        tenants=10,
        decisions=50,
    )
    results = repository.run(pg_server.admin_url, options)
    copy, reads = results["copy"], results["reads"]
    assert copy["rows"] == 5000
    for key in (
        "raw_copy_rows_s",
        "bulk_insert_rows_s",
        "sqlalchemy_executemany_rows_s",
        "bulk_insert_2_connections_rows_s",
    ):
        assert copy[key] > 0, key
    assert results["memory"]["rows"] == 5000 and results["memory"]["peak_rss_mb"] > 0
    assert reads["history_qps_concurrent"] > 0 and reads["raw_fetch_qps_concurrent"] > 0
    assert reads["raw_fetch_same_codecs_qps_concurrent"] > 0
    assert reads["pgbench_history_tps"] > 0
    assert reads["rls"]["history_ms_tenant_scoped"]["p50"] > 0


def test_the_refresh_benchmark_keeps_the_view_exact(pg_server: Server) -> None:
    options = rollup.Options(
        windows=(20_000, 40_000),
        new_rows=2000,
        tenants=10,
        decisions=50,
        window_alone=10_000,
        old_rows=20_000,
        tenant_rows=3000,
        tenant_calls=50,
        capture_rows=5000,
        capture_rounds=1,
        repeats=1,
    )
    results = rollup.run(pg_server.admin_url, options)
    assert all(w["view_equals_seed_sql"] for w in results["window"])
    assert results["old"]["view_equals_seed_sql"] is True
    assert results["tenant"]["total_validations"] == 3000
    assert results["capture"]["delta_trigger_rows_s"] > 0
    assert results["readers"]["refresh_concurrently_s"] > 0
    assert results["window_growth"] > 0


def test_the_load_scenario_reports_the_loads_own_fold_and_leaves_no_backlog(
    pg_server: Server,
) -> None:
    options = rollup.Options(load_rows=20_000, load_days=3, tenants=10, decisions=50, repeats=1)
    results = rollup.run(pg_server.admin_url, options, scenarios=("load",))["load"]
    assert results["load_folded_deltas"] > 0
    assert results["backlog_after_first_refresh"]["delta_rows"] == 0
    assert results["first_refresh_after_load_s"] > 0 and results["refresh_steady_s"] > 0
    assert results["view_equals_seed_sql"] is True


def test_the_ledger_benchmark_measures_every_figure_and_verifies(pg_server: Server) -> None:
    options = ledger.Options(
        rows=3000,
        rounds=1,
        inserts=100,
        tenants=10,
        decisions=50,
        chunks=4,
        writer_records=500,
        producers=8,
    )
    results = ledger.run(pg_server.admin_url, options)
    writes, verify = results["writes"], results["verify"]
    assert writes["rows"] == 3000 and writes["insert_calls"] == 100
    assert writes["writer_records"] == 500 and writes["copy_chunks"] == 4
    for key in (
        "copy_ratio",
        "insert_ratio",
        "copy_without_ledger_rows_s",
        "copy_chunked_ratio",
        "writer_ratio",
        "writer_without_ledger_rows_s",
    ):
        assert writes[key] > 0, key
    # The rows left in place verify (the benchmark raises otherwise), every one of them.
    assert verify["verified_rows"] == 3000 and verify["sealed_entries"] == 1
    assert verify["verify_rows_s"] > 0 and verify["scan_rows_s"] > 0
    events = results["event_triggers"]
    for key in ("refresh_ratio", "drop_table_with_ms", "drop_table_without_ms"):
        assert events[key] > 0, key


def test_the_metrics_benchmark_compares_with_the_seed_sql(pg_server: Server) -> None:
    options = metrics.Options(
        range_rows=20_000,
        days=3,
        other_rows=2000,
        tenant_rows=3000,
        range_calls=6,
        seed_calls=3,
        tenant_calls=20,
        fold_rows=2000,
        fold_rounds=1,
    )
    results = metrics.run(pg_server.admin_url, options)
    ranged = results["range"]
    assert ranged["equal_to_seed_sql"] is True
    assert ranged["distinct_processing_times"] > 1000
    assert ranged["tenant_metrics_range_ms"]["p50"] > 0 and ranged["ratio_p50"] > 0
    for tail in ("short_tail", "long_tail"):
        assert results["24h"][tail]["tenant_rows_24h"] == 3000
        assert results["24h"][tail]["tenant_metrics_24h_v6_ms"]["p99"] > 0
        assert results["24h"][tail]["tenant_metrics_24h_v5_ms"]["p99"] > 0
    assert results["24h"]["long_tail"]["distinct_processing_times_24h"] > 500
    history = results["24h"]["long_tail_with_history"]
    assert history["tenant_rows_24h"] > 0 and history["tenant_metrics_24h_v6_ms"]["p99"] > 0
    assert ranged["tenant_metrics_range_v4_ms"]["p99"] > 0
    assert ranged["tenant_metrics_range_v3_ms"]["p99"] > 0 and ranged["v3_over_v4_p50"] > 0
    assert results["fold"]["fold_now_s"] > 0 and results["fold"]["ratio"] > 0
    assert results["fold"]["versions"] == "rollup_fold_v6 vs rollup_fold_v5"


def test_recover_command_reports_what_it_did(database_url: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "acgs_db", "recover", "--older-than", "3600"],
        env={"ACGS_DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"},
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert out.splitlines()[0] == "committed 0, rolled back 0 prepared transaction(s)"
