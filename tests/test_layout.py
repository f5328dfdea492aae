"""The package's layout: the library imports neither Alembic nor SQLAlchemy nor the operator's
tooling (acgs_db.tooling) and benchmarks (acgs_db.bench), which import the library."""

from __future__ import annotations

import json
import subprocess
import sys

LIBRARY = (
    "acgs_db",
    "acgs_db.constants",
    "acgs_db.jsoncodec",
    "acgs_db.records",
    "acgs_db.pool",
    "acgs_db.repository",
    "acgs_db.ingest",
    "acgs_db.writer",
    "acgs_db.refresher",
    "acgs_db.partitions",
    "acgs_db.schedule",
    "acgs_db.ledger",
    "acgs_db.tenants",
    "acgs_db.locks",
    "acgs_db.metrics",
    "acgs_db.digest",
)


def _modules_after_import(modules: tuple[str, ...]) -> list[str]:
    """Names in ``sys.modules`` of a fresh interpreter after importing ``modules``."""
    code = (
        "import importlib, json, sys\n"
        f"for name in {list(modules)!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    loaded: list[str] = json.loads(done.stdout)
    return loaded


def test_the_library_loads_neither_alembic_nor_sqlalchemy() -> None:
    loaded = _modules_after_import(LIBRARY)
    assert "acgs_db.repository" in loaded
    heavy = [m for m in loaded if m.split(".")[0] in ("alembic", "sqlalchemy", "typer", "rich")]
    assert heavy == [], f"importing the library loads {heavy}"


def test_the_library_loads_no_tooling() -> None:
    loaded = _modules_after_import(LIBRARY)
    tooling = [m for m in loaded if m.startswith(("acgs_db.tooling", "acgs_db.bench"))]
    # create_pool() with no URL anywhere imports the embedded cluster's module only then.
    assert tooling == []


def test_the_command_line_and_benchmarks_import() -> None:
    loaded = _modules_after_import(("acgs_db.tooling.cli", "acgs_db.bench.report"))
    assert {"acgs_db.tooling.cli", "acgs_db.tooling.schema", "acgs_db.bench.pgbench"} <= set(loaded)
