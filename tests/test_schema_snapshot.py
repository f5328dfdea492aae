"""sql/schema.sql, the committed snapshot of the schema at head, matches the migrations."""

from __future__ import annotations

import difflib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "schema_snapshot.py"


def _snapshot_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("schema_snapshot", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("schema_snapshot", module)
    spec.loader.exec_module(module)
    return module


snapshot = _snapshot_module()


def test_the_snapshot_matches_the_migrations(migrated_database: str) -> None:
    committed = snapshot.SNAPSHOT.read_text()
    migrated = snapshot.render(migrated_database)
    diff = "".join(
        difflib.unified_diff(
            committed.splitlines(keepends=True),
            migrated.splitlines(keepends=True),
            "sql/schema.sql (committed)",
            "the migrations at head",
        )
    )
    assert diff == "", (
        "sql/schema.sql differs from the schema the migrations create; regenerate it with"
        f" `{snapshot.COMMAND}`, review the diff and commit it with the migration:\n{diff}"
    )


def test_the_snapshot_holds_grants_policies_and_function_bodies() -> None:
    committed = snapshot.SNAPSHOT.read_text()
    assert "GRANT SELECT,INSERT ON TABLE public.constitutional_validations TO acgs_writer;" in (
        committed
    )
    assert "CREATE POLICY tenant_isolation ON public.constitutional_validations" in committed
    assert "CREATE FUNCTION public.fold_validation_rollup()" in committed
    assert "PARTITION BY RANGE (created_at);" in committed
    assert "_p20" not in committed  # the dated partitions are left out


def test_normalising_drops_what_varies_and_names_the_owner() -> None:
    dump = (
        "--\n-- PostgreSQL database dump\n--\n\\restrict abc\nSET lock_timeout = 0;\n"
        "SELECT pg_catalog.set_config('search_path', '', false);\n\n\n\n"
        "ALTER TABLE public.t OWNER TO someone;\nCREATE TABLE public.someone_else (x int);\n"
        "\\unrestrict abc\n"
    )
    text = snapshot.normalise(dump, "someone")
    body = text.split("\n\n", 1)[1]
    assert (
        body
        == "ALTER TABLE public.t OWNER TO <owner>;\nCREATE TABLE public.someone_else (x int);\n"
    )
