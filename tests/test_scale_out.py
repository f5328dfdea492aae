"""The schema at head and the repository's statements against Citus's rules for a table
distributed by ``tenant_id`` (Citus itself is not installable here; see docs/scale-out.md).

Rules checked, from Citus's documentation and source (cited in docs/scale-out.md):

* every primary key, unique index and exclusion constraint of a distributed table holds the
  distribution column (Citus refuses ``create_distributed_table`` otherwise);
* co-located tables share the distribution column's type;
* foreign keys only between two local tables, two reference tables, a local and a reference
  table, a distributed and a reference table, or two co-located distributed tables through the
  distribution column;
* every relation of the store is classified (``acgs_db.scale_out.TABLES``), every trigger on a
  distributed table is declared with its replacement, and every statement of ``sql/queries``
  is either routed to one tenant's shard (its generic plan filters every distributed table it
  reads on ``tenant_id = $n``, or its INSERT gives ``tenant_id`` a parameter) or listed as
  cross-shard with its reason.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from acgs_db.resources import load_sql, sql_dir
from acgs_db.scale_out import (
    DISTRIBUTED_FUNCTIONS,
    DISTRIBUTION_COLUMN,
    REPLACED_TRIGGERS,
    STATEMENTS,
    TABLES,
    TENANT_FUNCTIONS,
    Placement,
    Routing,
    distributed_tables,
)

Conn = psycopg.Connection
DISTRIBUTED = distributed_tables()
# A condition on the distribution column against a bind parameter, e.g. "(r.tenant_id =
# ($1)::text)" or "((d.tenant_id)::text = ($1)::text)".
_TENANT_QUAL = re.compile(r"\btenant_id\)?(::[\w ]+)?\s*=\s*\(*\$\d+\b")
_INSERT = re.compile(
    r"INSERT\s+INTO\s+(\w+)(?:\s+AS\s+\w+)?\s*\(([^)]*)\)\s*(VALUES\s*\(|SELECT)",
    re.IGNORECASE,
)


# -- the catalog ----------------------------------------------------------------------------


def store_relations(conn: Conn) -> set[str]:
    """Tables, materialized views and views of the store's schema (partitions excluded)."""
    rows = conn.execute(
        """
        SELECT c.relname FROM pg_class c
        WHERE c.relnamespace = current_schema()::regnamespace
          AND c.relkind IN ('r', 'p', 'm', 'v', 'f') AND NOT c.relispartition
        """
    ).fetchall()
    return {r[0] for r in rows}


def unclassified(conn: Conn) -> set[str]:
    return store_relations(conn) - set(TABLES)


def _with_partitions(conn: Conn, table: str) -> list[str]:
    """The table and its partitions (pg_partition_tree returns nothing for a plain table)."""
    rows = conn.execute(
        "SELECT relid::regclass::text FROM pg_partition_tree(%s::regclass)", (table,)
    ).fetchall()
    return [r[0] for r in rows] or [table]


def unique_keys_without_tenant(conn: Conn) -> list[str]:
    """Unique indexes (primary keys included) and exclusion constraints of the distributed
    tables and their partitions whose key columns lack the distribution column."""
    bad: list[str] = []
    for table in sorted(DISTRIBUTED):
        for rel in _with_partitions(conn, table):
            rows = conn.execute(
                """
                SELECT i.indexrelid::regclass::text,
                       %s = ANY (SELECT a.attname FROM unnest(i.indkey[0:i.indnkeyatts - 1]) k
                                 JOIN pg_attribute a
                                   ON a.attrelid = i.indrelid AND a.attnum = k)
                FROM pg_index i
                LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.contype = 'x'
                WHERE i.indrelid = %s::regclass AND (i.indisunique OR c.oid IS NOT NULL)
                """,
                (DISTRIBUTION_COLUMN, rel),
            ).fetchall()
            bad.extend(name for name, holds in rows if not holds)
    return bad


def foreign_keys_against_citus_rules(conn: Conn) -> list[str]:
    """Foreign keys of the store that Citus would not allow between the placements declared."""

    def placement(name: str) -> Placement:
        table = TABLES.get(name)
        return Placement.LOCAL if table is None else table.placement

    rows = conn.execute(
        """
        SELECT c.conname, t.relname, r.relname,
               %(col)s = ANY (SELECT a.attname FROM unnest(c.conkey) k JOIN pg_attribute a
                              ON a.attrelid = c.conrelid AND a.attnum = k)
        FROM pg_constraint c
        JOIN pg_class t ON t.oid = c.conrelid
        JOIN pg_class r ON r.oid = c.confrelid
        WHERE c.contype = 'f' AND c.conparentid = 0
          AND current_schema()::regnamespace IN (t.relnamespace, r.relnamespace)
        """,
        {"col": DISTRIBUTION_COLUMN},
    ).fetchall()
    bad = []
    for name, referencing, referenced, through_tenant in rows:
        source, target = placement(referencing), placement(referenced)
        distributed = {Placement.DISTRIBUTED, Placement.REPLACED}
        allowed = (
            {source, target} <= {Placement.LOCAL, Placement.REFERENCE}
            or (source in distributed and target in distributed and through_tenant)
            or (source in distributed and target is Placement.REFERENCE)
        )
        if not allowed:
            bad.append(f"{name}: {referencing} -> {referenced}")
    return bad


# -- statements -----------------------------------------------------------------------------


def _parents(conn: Conn) -> dict[str, str]:
    """Partition name -> distributed table it belongs to (the tables themselves included)."""
    found = {}
    for table in DISTRIBUTED:
        for rel in _with_partitions(conn, table):
            found[rel.split(".")[-1].strip('"')] = table
    return found


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def generic_plan(conn: Conn, name: str, text: str | None = None) -> dict[str, Any]:
    """``EXPLAIN (VERBOSE)`` of the statement's generic plan (what a prepared statement runs):
    ``sql/queries/<name>.sql``, or ``text``."""
    prepared = f"scale_out_{name}"
    conn.execute(f"PREPARE {prepared} AS {text or load_sql(f'queries/{name}')}")
    try:
        with conn.transaction():
            conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            row = conn.execute(
                "SELECT cardinality(parameter_types) FROM pg_prepared_statements WHERE name = %s",
                (prepared,),
            ).fetchone()
            assert row is not None
            args = ", ".join(["NULL"] * row[0])
            execute = f"EXECUTE {prepared} ({args})" if args else f"EXECUTE {prepared}"
            plan = conn.execute(f"EXPLAIN (VERBOSE, FORMAT JSON) {execute}").fetchone()
            assert plan is not None
    finally:
        conn.execute(f"DEALLOCATE {prepared}")
    return dict(plan[0][0]["Plan"])


def _insert_tenant_is_parameter(text: str) -> bool:
    """Whether an INSERT ... VALUES gives tenant_id a bind parameter (one row, one shard)."""
    match = _INSERT.search(text)
    if match is None or not match[3].upper().startswith("VALUES"):
        return False
    columns = [c.strip() for c in match[2].split(",")]
    values: list[str] = []
    depth, current = 0, ""
    for ch in text[match.end() :]:
        if depth == 0 and ch in ",)":
            values.append(current.strip())
            current = ""
            if ch == ")":
                break
            continue
        depth += (ch == "(") - (ch == ")")
        current += ch
    pairs = dict(zip(columns, values, strict=True))
    return re.fullmatch(r"\$\d+", pairs.get(DISTRIBUTION_COLUMN, "")) is not None


def touches(conn: Conn, name: str, statement: str | None = None) -> list[tuple[str, bool]]:
    """Each access of the statement to a distributed table: (what, filtered on the tenant)."""
    text = re.sub(r"--[^\n]*", "", statement or load_sql(f"queries/{name}"))
    plan = generic_plan(conn, name, statement)
    parents = _parents(conn)
    found: list[tuple[str, bool]] = []
    for node in _nodes(plan):
        relation = node.get("Relation Name")
        if relation not in parents:
            continue
        if node["Node Type"] == "ModifyTable":
            if node.get("Operation") == "Insert":
                found.append((f"INSERT INTO {relation}", _insert_tenant_is_parameter(text)))
            continue  # UPDATE/DELETE: the scan below it is checked
        quals = " AND ".join(
            str(node[key]) for key in ("Index Cond", "Recheck Cond", "Filter") if key in node
        )
        routed = bool(_TENANT_QUAL.search(quals)) and " OR " not in quals
        found.append((f"{node['Node Type']} on {relation}: {quals or 'no condition'}", routed))
    dump = json.dumps(plan)
    for function in sorted(DISTRIBUTED_FUNCTIONS):
        if re.search(rf"\b{function}\(", dump):  # called, not inlined into the plan
            found.append((f"{function}() (not inlined: Citus cannot see its filter)", False))
    for function in sorted(TENANT_FUNCTIONS):
        if re.search(rf"\b{function}\(", dump):  # each statement inside filters on the tenant
            found.append((f"{function}() (tenant_id = its tenant argument)", True))
    return found


def query_names() -> set[str]:
    return {p.stem for p in (sql_dir() / "queries").glob("*.sql")}


@pytest.fixture
def planner(conn: Conn) -> Conn:
    """The session database's connection, with the tenant staging table of this session
    (``stage_flush`` reads it)."""
    conn.execute(load_sql("queries/stage_create"))
    return conn


# -- tables ---------------------------------------------------------------------------------


def test_every_relation_of_the_store_is_classified(conn: Conn) -> None:
    assert unclassified(conn) == set()
    assert set(TABLES) - store_relations(conn) == set(), "classified relations that are gone"
    for name, table in TABLES.items():
        assert table.reason, name


def test_a_new_table_fails_the_classification_until_declared(conn: Conn) -> None:
    with pytest.raises(_Rollback), conn.transaction():
        conn.execute("CREATE TABLE scale_out_newcomer (tenant_id varchar(50))")
        assert unclassified(conn) == {"scale_out_newcomer"}
        raise _Rollback


def test_distributed_tables_are_the_tenant_tables(conn: Conn) -> None:
    expected = {
        "constitutional_validations",
        "decision_validation_cache",
        "validation_rollup",
        "validation_rollup_delta",
        "rollup_totals_hour",
        "rollup_bins_day",
        "rollup_bins_day_coarse",
        "rollup_bins_hour",
        "tenant_constitutional_metrics_24h",
    }
    assert expected == DISTRIBUTED
    assert {n for n, t in TABLES.items() if t.placement is Placement.LOCAL} == {
        "ingest_batches",
        "acgs_exclusive",
        "alembic_version",
        "ledger_entries",
        "ledger_blocks",
        "ledger_drop_pending",
    }
    assert {n for n, t in TABLES.items() if t.placement is Placement.REFERENCE} == {"tenant_logins"}


def test_every_unique_key_of_a_distributed_table_holds_tenant_id(conn: Conn) -> None:
    assert unique_keys_without_tenant(conn) == []
    # The check sees the keys it must: the primary key of every partition is among them.
    keys = conn.execute(
        "SELECT count(*) FROM pg_index i JOIN pg_inherits h ON h.inhrelid = i.indrelid"
        " WHERE h.inhparent = 'constitutional_validations'::regclass AND i.indisprimary"
    ).fetchone()
    assert keys is not None and keys[0] >= 5


def test_a_unique_index_without_tenant_id_is_caught(conn: Conn) -> None:
    with pytest.raises(_Rollback), conn.transaction():
        conn.execute(
            # WHERE false: built whatever rows other tests left (Citus refuses it all the same)
            "CREATE UNIQUE INDEX scale_out_bad ON decision_validation_cache (decision_hash)"
            " INCLUDE (tenant_id) WHERE false"
        )
        assert unique_keys_without_tenant(conn) == ["scale_out_bad"]
        raise _Rollback


def test_the_distribution_column_has_one_type_and_no_nulls(conn: Conn) -> None:
    rows = conn.execute(
        """
        SELECT c.relname, format_type(a.atttypid, a.atttypmod), a.attnotnull
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
        WHERE c.relnamespace = current_schema()::regnamespace AND c.relname = ANY (%s)
          AND a.attname = %s AND NOT a.attisdropped
        """,
        (sorted(DISTRIBUTED), DISTRIBUTION_COLUMN),
    ).fetchall()
    assert {r[0] for r in rows} == DISTRIBUTED
    # Co-location needs the same type; a NULL tenant could not be placed on a shard.
    assert {r[1] for r in rows} == {"character varying(50)"}
    assert all(r[2] for r in rows if r[0] != "tenant_constitutional_metrics_24h")


def test_foreign_keys_follow_citus_rules(conn: Conn) -> None:
    assert foreign_keys_against_citus_rules(conn) == []
    with pytest.raises(_Rollback), conn.transaction():
        # A reference table pointing at a distributed one: Citus refuses it.
        conn.execute(
            "ALTER TABLE tenant_logins ADD COLUMN b timestamptz, ADD COLUMN p integer,"
            " ADD CONSTRAINT scale_out_bad_fk FOREIGN KEY (tenant_id, b, p)"
            " REFERENCES validation_rollup (tenant_id, bucket, processing_time_ms)"
        )
        assert foreign_keys_against_citus_rules(conn) == [
            "scale_out_bad_fk: tenant_logins -> validation_rollup"
        ]
        raise _Rollback


def test_triggers_on_distributed_tables_are_declared_with_their_replacement(conn: Conn) -> None:
    rows = conn.execute(
        """
        SELECT t.tgname FROM pg_trigger t
        WHERE NOT t.tgisinternal AND t.tgparentid = 0
          AND t.tgrelid IN (SELECT relid FROM pg_partition_tree(%s::regclass))
           OR (NOT t.tgisinternal AND t.tgrelid::regclass::text = ANY (%s))
        """,
        ("constitutional_validations", sorted(DISTRIBUTED)),
    ).fetchall()
    assert {r[0] for r in rows} == set(REPLACED_TRIGGERS)
    assert set(REPLACED_TRIGGERS.values()) == {"capture", "ledger", "append-only"}


# -- statements -----------------------------------------------------------------------------


def test_every_statement_is_classified() -> None:
    assert query_names() - set(STATEMENTS) == set(), "unclassified statements"
    assert set(STATEMENTS) - query_names() == set(), "classified statements that are gone"
    for name, statement in STATEMENTS.items():
        if statement.routing is not Routing.TENANT:
            assert len(statement.reason) > 10, name


@pytest.mark.parametrize(
    "name", sorted(n for n, s in STATEMENTS.items() if s.routing is Routing.TENANT)
)
def test_tenant_statements_reach_one_tenant_only(planner: Conn, name: str) -> None:
    found = touches(planner, name)
    assert found, f"{name} touches no distributed table: classify it otherwise"
    unrouted = [what for what, routed in found if not routed]
    assert unrouted == [], f"{name} is not filtered on tenant_id = $n: {unrouted}"


# The one statement each session-planned wrapper (migration 0015) runs, as its body has it and
# with its arguments as parameters.
WRAPPED = {
    "tenant_metrics_24h_planned": (
        "RETURN QUERY SELECT * FROM tenant_metrics_24h(p_tenant);",
        "SELECT * FROM tenant_metrics_24h($1)",
    ),
    "tenant_metrics_range_planned": (
        "RETURN QUERY SELECT * FROM tenant_metrics_range(p_tenant, p_since, p_until);",
        "SELECT * FROM tenant_metrics_range($1, $2, $3)",
    ),
}


@pytest.mark.parametrize("name", sorted(WRAPPED))
def test_what_the_planned_wrappers_run_reaches_one_tenant_only(planner: Conn, name: str) -> None:
    assert name in TENANT_FUNCTIONS
    body = planner.execute("SELECT prosrc FROM pg_proc WHERE proname = %s", (name,)).fetchone()
    assert body is not None
    in_body, statement = WRAPPED[name]
    assert [line.strip() for line in body[0].splitlines() if line.strip()] == [
        "BEGIN",
        in_body,
        "END",
    ]
    found = touches(planner, name, statement)
    assert len(found) >= 5
    unrouted = [what for what, routed in found if not routed]
    assert unrouted == [], f"{name} is not filtered on tenant_id = $n: {unrouted}"


@pytest.mark.parametrize(
    "name", sorted(n for n, s in STATEMENTS.items() if s.routing is Routing.CROSS_SHARD)
)
def test_cross_shard_statements_are_truly_cross_shard(planner: Conn, name: str) -> None:
    # Listed as cross-shard: at least one access is not routed by tenant. A statement that
    # becomes tenant-filtered fails here until it is moved to TENANT.
    found = touches(planner, name)
    assert any(not routed for _, routed in found), found


@pytest.mark.parametrize(
    "name",
    sorted(n for n, s in STATEMENTS.items() if s.routing is Routing.NO_DISTRIBUTED_TABLE),
)
def test_other_statements_touch_no_distributed_table(planner: Conn, name: str) -> None:
    text = re.sub(r"--[^\n]*", "", load_sql(f"queries/{name}"))
    named = {t for t in DISTRIBUTED | DISTRIBUTED_FUNCTIONS if re.search(rf"\b{t}\b", text)}
    if name in {"copy_start", "batch_start"}:  # row_security_active('...'): the catalog
        named.discard("constitutional_validations")
    assert named == set()
    if not text.lstrip().upper().startswith("CREATE"):  # utility statements have no plan
        assert touches(planner, name) == []


def test_the_tenant_check_sees_an_unfiltered_scan(planner: Conn) -> None:
    # decision_scores scans every partition by decision id: the check reports each scan.
    found = touches(planner, "decision_scores")
    assert len(found) >= 5 and not any(routed for _, routed in found)
    # history's scans each carry tenant_id = $1.
    assert all(routed for _, routed in touches(planner, "history"))


class _Rollback(Exception):
    """Raised to leave a transaction that changed the catalog for a check."""
