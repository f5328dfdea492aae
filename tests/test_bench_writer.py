"""``acgs-db bench writer`` end to end on a small scale: every figure is produced and every way
of writing stored exactly the records it was given (timings are not judged here)."""

from __future__ import annotations

import pytest
from conftest import Server

from acgs_db.bench import writer


@pytest.mark.parametrize("rate", [None, 400.0])
def test_the_writer_benchmark_measures_every_way(pg_server: Server, rate: float | None) -> None:
    options = writer.Options(
        producers=8,
        records=600,
        rate=rate,
        duration=1.0,
        connections=(1, 2),
        tenants=5,
        decisions=20,
    )
    results = writer.run(pg_server.admin_url, options)
    rows = results["records"]
    assert rows == (400 if rate else 600)
    assert results["insert"]["stored"] == rows
    assert results["insert"]["validations_s"] > 0
    assert [w["connections"] for w in results["writer"]] == [1, 2]
    for run in results["writer"]:
        assert run["stored"] == rows
        assert run["batches"] >= 1 and run["mean_batch"] >= 1
        assert run["latency_ms"]["p99"] >= run["latency_ms"]["p50"] > 0
        assert run["ratio_to_insert"] > 0
    assert results["bulk_insert"]["stored"] == rows
