"""Every statement the package runs lives in a ``.sql`` file under sql/, loaded by name: each
name loaded exists, each file is loaded somewhere, and no SQL is left inline in the package.

Read from the sources (``ast``), not at run time, so that a typo in a name fails here. A name
computed at run time (an f-string, a variable) must be listed in :data:`DYNAMIC` with the names
it can take, or in :data:`BY_CALL` when it comes from a literal argument of a helper.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

from acgs_db.bench.pgbench import ScriptName

ROOT = Path(__file__).resolve().parent.parent
SQL = ROOT / "sql"
# Code that runs SQL: the package, the migrations, the scripts and the research benchmarks.
SOURCES = ("acgs_db", "migrations", "scripts", "benchmarks")
# Files under sql/ that are not loaded by name: the schema snapshot (tests/test_schema_snapshot).
NOT_LOADED = {"schema"}

DYNAMIC: dict[tuple[str, str], tuple[str, ...]] = {
    ("acgs_db/ledger.py", "query"): ("ledger/entries_by_xid", "ledger/entries_by_id"),
    ("acgs_db/tooling/loader.py", "'bench/vacuum_analyze_load' if vacuum else 'bench/analyze'"): (
        "bench/vacuum_analyze_load",
        "bench/analyze",
    ),
    ("acgs_db/bench/rollup.py", "setup"): (
        "bench/capture_none",
        "bench/capture_delta",
    ),
    ("acgs_db/bench/ledger.py", "f\"bench/ledger_capture_{('on' if on else 'off')}\""): (
        "bench/ledger_capture_on",
        "bench/ledger_capture_off",
    ),
    ("acgs_db/bench/metrics.py", "f'schema/{version}'"): (
        "schema/tenant_metrics_24h_v6",
        "schema/tenant_metrics_24h_v5",
        "schema/tenant_metrics_range_v4",
        "schema/tenant_metrics_range_v3",
        "schema/rollup_fold_v6",
        "schema/rollup_fold_v5",
    ),
    ("acgs_db/bench/metrics.py", "f'schema/{versions[0]}'"): (
        "schema/tenant_metrics_24h_v6",
        "schema/tenant_metrics_range_v4",
    ),
    ("migrations/versions/0010_ledger.py", "f'schema/{name}_v1'"): (
        "schema/ledger_row_digest_v1",
        "schema/ledger_entry_hash_v1",
        "schema/ledger_merkle_root_v1",
        "schema/ledger_capture_v1",
        "schema/ledger_append_only_v1",
        "schema/ledger_seal_v1",
        "schema/ledger_drop_start_v1",
        "schema/ledger_drop_end_v1",
    ),
}


@dataclass(frozen=True, slots=True)
class ByCall:
    """``load_sql(f"{folder}{name}")`` reached through helpers: each call of a helper in the
    same file passes the name as a literal at the helper's position (helper name -> position)."""

    folder: str
    helpers: dict[str, int]


BY_CALL: dict[tuple[str, str], ByCall] = {
    ("acgs_db/repository.py", "f'queries/{name}'"): ByCall(
        "queries/", {"_fetch": 0, "_fetchrow": 0, "_fetchval": 0, "_execute": 0, "_read": 1}
    ),
    ("acgs_db/tenants.py", "f'tenants/{name}'"): ByCall("tenants/", {"_statement": 0}),
}

# Inline SQL-looking strings of the package that are not statements loaded from sql/, and why.
INLINE_ALLOWED: dict[str, set[str]] = {
    # Transaction control of the two-phase COPY: the gid is a literal the server cannot bind.
    "acgs_db/ingest.py": {
        "BEGIN",
        "ROLLBACK",
        "PREPARE TRANSACTION",
        "COMMIT PREPARED",
        "ROLLBACK PREPARED",
    },
    # A command tag compared with the server's answer (a batch already committed), not a statement.
    "acgs_db/writer.py": {"INSERT 0 0"},
    # Prose: how a statement behaves under Citus.
    "acgs_db/scale_out.py": {"INSERT ... SELECT from the session's temporary staging table"},
    # Labels printed by `acgs-db load`, not statements.
    "acgs_db/tooling/cli/bench.py": {
        "VACUUM (ANALYZE) constitutional_validations",
        "ANALYZE constitutional_validations",
        "VACUUM (ANALYZE)",
        "ANALYZE",
    },
}
_SQL_START = re.compile(
    r"^\s*(SELECT|INSERT|UPDATE|DELETE|CREATE|ALTER|DROP|TRUNCATE|VACUUM|ANALYZE|SET|RESET|"
    r"CHECKPOINT|WITH|COPY|DO|CALL|GRANT|REVOKE|LOCK|REFRESH|BEGIN|COMMIT|ROLLBACK|PREPARE|"
    r"SHOW|DISCARD|EXPLAIN)\b"
)


def _python_files() -> list[Path]:
    files: list[Path] = []
    for top in SOURCES:
        folder = ROOT / top
        if folder.is_dir():
            files += sorted(folder.rglob("*.py"))
    files += [p for p in sorted((ROOT / "scripts").glob("*")) if _is_python_script(p)]
    return files


def _is_python_script(path: Path) -> bool:
    if path.suffix or not path.is_file():
        return False
    return path.read_text(encoding="utf-8").startswith("#!/usr/bin/env python")


def _relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _sql_names() -> set[str]:
    return {p.relative_to(SQL).with_suffix("").as_posix() for p in SQL.rglob("*.sql")}


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and (
            (isinstance(node.func, ast.Name) and node.func.id == name)
            or (isinstance(node.func, ast.Attribute) and node.func.attr == name)
        )
    ]


@dataclass
class Loads:
    """What the sources load: literal names, computed names with their values, and problems."""

    names: dict[str, list[str]]  # name -> where it is loaded
    unlisted: list[str]
    dynamic_seen: set[tuple[str, str]]


def _loads() -> Loads:
    loads = Loads(names={}, unlisted=[], dynamic_seen=set())
    for path in _python_files():
        where = _relative(path)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=where)
        for call in _calls(tree, "load_sql"):
            if not call.args:
                continue
            arg = call.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                loads.names.setdefault(arg.value, []).append(f"{where}:{call.lineno}")
                continue
            key = (where, ast.unparse(arg))
            loads.dynamic_seen.add(key)
            if key in DYNAMIC:
                for name in DYNAMIC[key]:
                    loads.names.setdefault(name, []).append(f"{where}:{call.lineno}")
            elif key in BY_CALL:
                rule = BY_CALL[key]
                for helper, position in rule.helpers.items():
                    for helper_call in _calls(tree, helper):
                        if len(helper_call.args) <= position:
                            continue
                        value = helper_call.args[position]
                        if isinstance(value, ast.Constant) and isinstance(value.value, str):
                            name = rule.folder + value.value
                            loads.names.setdefault(name, []).append(f"{where}:{helper_call.lineno}")
                        else:
                            loads.unlisted.append(
                                f"{where}:{helper_call.lineno}: {helper}() with a computed name"
                            )
            else:
                loads.unlisted.append(f"{where}:{call.lineno}: load_sql({ast.unparse(arg)})")
    for script in ScriptName:  # pgbench reads these files by path (acgs_db.bench.pgbench)
        loads.names.setdefault(f"pgbench/{script.value}", []).append("ScriptName")
    return loads


def test_every_loaded_name_exists() -> None:
    loads = _loads()
    missing = {n: w for n, w in loads.names.items() if not (SQL / f"{n}.sql").is_file()}
    assert missing == {}, f"loaded but not under sql/: {missing}"


def test_every_computed_name_is_listed() -> None:
    loads = _loads()
    assert loads.unlisted == [], (
        "load_sql() with a computed name: list its possible values in DYNAMIC (or BY_CALL)"
    )
    stale = (set(DYNAMIC) | set(BY_CALL)) - loads.dynamic_seen
    assert stale == set(), f"listed in DYNAMIC/BY_CALL but no longer in the sources: {stale}"


def test_every_sql_file_is_loaded() -> None:
    loaded = set(_loads().names)
    assert len(loaded) > 100
    unused = sorted(_sql_names() - loaded - NOT_LOADED)
    assert unused == [], f"files under sql/ that nothing loads (delete them or load them): {unused}"


def _docstrings(tree: ast.AST) -> set[int]:
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def test_no_sql_is_inline_in_the_package() -> None:
    inline: list[str] = []
    for path in sorted((ROOT / "acgs_db").rglob("*.py")):
        where = _relative(path)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=where)
        docstrings = _docstrings(tree)
        allowed = INLINE_ALLOWED.get(where, set())
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docstrings
                and _SQL_START.match(node.value)
                and not any(node.value.strip().startswith(a) for a in allowed)
            ):
                inline.append(f"{where}:{node.lineno}: {node.value.strip()[:60]!r}")
    assert inline == [], f"SQL inline in Python: move it to sql/ and load it by name: {inline}"


def test_the_scan_sees_inline_sql_and_computed_names() -> None:
    tree = ast.parse('run("SELECT 1")\nload_sql(f"queries/{x}")\n"""Doc: SELECT in prose."""\n')
    strings = [n for n in ast.walk(tree) if isinstance(n, ast.Constant)]
    assert [s.value for s in strings if _SQL_START.match(str(s.value))] == ["SELECT 1"]
    (call,) = _calls(tree, "load_sql")
    assert ast.unparse(call.args[0]) == "f'queries/{x}'"
