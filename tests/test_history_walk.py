"""The history look-up walks partitions newest first (migration 0013, acgs_history_compile()).

Its answer is the parent query's, exactly, whatever the rows' months (older partitions, the
default partition, premade months ahead of now()) and whatever maintenance did in between
(rows moved out of the default partition, partitions created, partitions dropped by
retention); it locks the partitions it reads, not every partition; its inner statements use
the primary key backwards under generic plans; and it keeps the table's row-level security
for tenant logins."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from conftest import create_login
from psycopg import sql

from acgs_db import tenants
from acgs_db.resources import load_sql
from acgs_db.settings import Settings

SETTINGS = Settings.from_env({})
HASH = "cdd01ef066bc6cf2"
PARENT_QUERY = (
    "SELECT id FROM constitutional_validations"
    " WHERE tenant_id = %s AND decision_id = %s AND constitutional_hash = %s"
    " ORDER BY created_at DESC, id DESC LIMIT %s"
)
LIMITS = (1, 2, 3, 5, 8, 13, 40, 1000)

Conn = psycopg.Connection[tuple[Any, ...]]


@pytest.fixture
def db(migrated_database: str) -> Iterator[Conn]:
    # Client-side binding: PREPARE ... AS <statement with $n> goes to the server as written.
    with psycopg.connect(
        migrated_database, autocommit=True, cursor_factory=psycopg.ClientCursor
    ) as conn:
        yield conn


def _walk(conn: Conn, tenant: str, decision: str, limit: int, query: str = "history") -> list[int]:
    rows = conn.execute(
        load_sql(f"queries/{query}")
        .replace("$1", "%s")
        .replace("$2", "%s")
        .replace("$3", "%s")
        .replace("$4", "%s"),
        (tenant, decision, HASH, limit),
    ).fetchall()
    return [int(r[0]) for r in rows]


def _parent(conn: Conn, tenant: str, decision: str, limit: int) -> list[int]:
    return [int(r[0]) for r in conn.execute(PARENT_QUERY, (tenant, decision, HASH, limit))]


def _assert_exact(conn: Conn, tenant: str, decision: str) -> None:
    for limit in LIMITS:
        expected = _parent(conn, tenant, decision, limit)
        assert _walk(conn, tenant, decision, limit) == expected, limit


def _insert(conn: Conn, tenant: str, decision: str, ages: list[str]) -> None:
    """One validation per age (an interval before now(); negative: in the future)."""
    for age in ages:
        conn.execute(
            "INSERT INTO constitutional_validations"
            " (tenant_id, decision_id, compliance_score, created_at)"
            " VALUES (%s, %s, 0.5, now() - %s::interval)",
            (tenant, decision, age),
        )


def _partitions(conn: Conn) -> set[str]:
    return {
        str(r[0])
        for r in conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'constitutional_validations'::regclass"
        )
    }


def _body(conn: Conn) -> str:
    row = conn.execute("SELECT prosrc FROM pg_proc WHERE proname = 'acgs_history'").fetchone()
    assert row is not None
    return str(row[0])


def _older_partitions(conn: Conn, months: int) -> None:
    conn.execute(
        "SELECT partman.create_partition_time('public.constitutional_validations',"
        " array(SELECT date_trunc('month', now()) - make_interval(months => m)"
        "       FROM generate_series(1, %s) AS m))",
        (months,),
    )


def test_the_walk_equals_the_parent_query_whatever_the_rows_months(db: Conn) -> None:
    _older_partitions(db, 4)
    db.execute("CALL acgs_partition_maintenance()")
    tenant, decision = f"walk-{uuid.uuid4().hex[:8]}", "d"
    # The current month, then older months (a limit crosses partitions), a decision with
    # rows in one older month only, and one with no rows at all.
    _insert(db, tenant, decision, ["1 minute", "2 hours", "40 days", "41 days", "70 days"])
    _insert(db, tenant, decision, ["100 days", "101 days", "102 days"])
    _insert(db, tenant, "old-only", ["75 days", "76 days"])
    for d in (decision, "old-only", "none"):
        _assert_exact(db, tenant, d)
    # A late row older than every partition (within the retention) lands in the default
    # partition.
    _insert(db, tenant, decision, ["200 days"])
    assert db.execute(
        "SELECT count(*) FROM constitutional_validations_default WHERE tenant_id = %s", (tenant,)
    ).fetchone() == (1,)
    _assert_exact(db, tenant, decision)
    # A future-dated row in a premade month ahead of now(): the newest row of the decision.
    _insert(db, tenant, decision, ["-45 days"])
    assert _walk(db, tenant, decision, 1) == _parent(db, tenant, decision, 1)
    _assert_exact(db, tenant, decision)
    # Maintenance moves the default partition's rows into a new partition and rewrites the
    # look-up in the same transaction: the new partition is read, and still exactly.
    before = _partitions(db)
    db.execute("CALL acgs_partition_maintenance()")
    made = _partitions(db) - before
    assert made and all(name in _body(db) for name in made)
    assert db.execute("SELECT count(*) FROM constitutional_validations_default").fetchone() == (0,)
    _assert_exact(db, tenant, decision)


def test_retention_drops_partitions_and_the_walk_follows(db: Conn) -> None:
    _older_partitions(db, 5)
    db.execute("CALL acgs_partition_maintenance()")
    tenant = f"keep-{uuid.uuid4().hex[:8]}"
    _insert(db, tenant, "d", ["1 hour", "35 days", "65 days", "130 days", "140 days"])
    _assert_exact(db, tenant, "d")
    db.execute(
        "UPDATE partman.part_config SET retention = '3 months', retention_keep_table = false"
        " WHERE parent_table = 'public.constitutional_validations'"
    )
    before = _partitions(db)
    db.execute("CALL acgs_partition_maintenance()")
    dropped = before - _partitions(db)
    assert dropped and not [name for name in dropped if name in _body(db)]
    _assert_exact(db, tenant, "d")
    assert len(_walk(db, tenant, "d", 100)) == len(_parent(db, tenant, "d", 100)) < 5


def test_every_statement_of_the_look_up_filters_the_tenant_argument(db: Conn) -> None:
    # What makes each statement a single-tenant (on Citus: router) query.
    body = _body(db)
    reads = re.findall(r"SELECT (?:v\.\*|1) FROM (\S+) v WHERE ([^\n]+)", body)
    assert len(reads) > len(_partitions(db))
    for _, where in reads:
        assert where.startswith("v.tenant_id = p_tenant AND v.decision_id = p_decision")


def test_the_compile_rewrites_only_on_change_and_names_every_partition(db: Conn) -> None:
    assert db.execute("SELECT acgs_history_compile()").fetchone() == (False,)
    body = _body(db)
    assert all(name in body for name in _partitions(db))
    _older_partitions(db, 8)  # made outside maintenance: read once the look-up is rewritten
    assert db.execute("SELECT acgs_history_compile()").fetchone() == (True,)
    assert all(name in _body(db) for name in _partitions(db))


def _relations_locked(conn: Conn, statement: str, params: tuple[object, ...]) -> set[str]:
    """Relations the session holds locks on right after ``statement``, in its transaction."""
    with conn.transaction():
        conn.execute(statement, params).fetchall()
        rows = conn.execute(
            "SELECT relation::regclass::text FROM pg_locks"
            " WHERE pid = pg_backend_pid() AND locktype = 'relation'"
            "   AND relation IS NOT NULL"
            "   AND relation::regclass::text LIKE 'constitutional_validations%%'"
        ).fetchall()
    return {str(r[0]) for r in rows}


def test_the_look_up_locks_the_partitions_it_reads_not_every_partition(db: Conn) -> None:
    _older_partitions(db, 8)
    db.execute("CALL acgs_partition_maintenance()")
    assert len(_partitions(db)) >= 14
    tenant = f"lock-{uuid.uuid4().hex[:8]}"
    _insert(db, tenant, "d", [f"{m} minutes" for m in range(1, 13)] + ["70 days"])
    db.execute("SET plan_cache_mode = force_generic_plan")
    history = load_sql("queries/history")
    db.execute(sql.SQL("PREPARE walk AS {}").format(sql.SQL(history)))
    db.execute(
        sql.SQL("PREPARE parent AS {}").format(
            sql.SQL(PARENT_QUERY.replace("%s", "${}").format(1, 2, 3, 4))
        )
    )
    for _ in range(2):  # plans made and cached (planning opens every index); then measured
        walk = _relations_locked(db, "EXECUTE walk (%s, 'd', %s, 10)", (tenant, HASH))
        parent = _relations_locked(db, "EXECUTE parent (%s, 'd', %s, 10)", (tenant, HASH))
    premade = {
        str(r[0])
        for r in db.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'constitutional_validations'::regclass"
            "   AND c.relname <> 'constitutional_validations_default'"
            "   AND (regexp_match(pg_get_expr(c.relpartbound, c.oid),"
            "                     'FROM \\(''([^'']+)''\\)'))[1]::timestamptz > now()"
        )
    }
    tables = {
        str(r[0])
        for r in db.execute(
            "SELECT relname FROM pg_class WHERE relname = ANY(%s) AND relkind IN ('r', 'p')",
            (list(walk),),
        )
    }
    newest = db.execute(
        "SELECT tableoid::regclass::text FROM constitutional_validations"
        " WHERE tenant_id = %s ORDER BY created_at DESC LIMIT 1",
        (tenant,),
    ).fetchone()
    assert newest is not None
    # The partition holding the 10 newest rows, the default and the premade months (the
    # guard's one-time probes), and no older partition: O(1) in the retention.
    assert tables == {newest[0], "constitutional_validations_default"} | premade
    # With their indexes: the parent's generic plan locks every partition and index.
    assert _partitions(db) <= parent
    assert len(walk) <= 2 * len(tables) + 1 < len(parent)


def _inner_plans(conn: Conn, statement: str, params: tuple[object, ...]) -> list[dict[str, Any]]:
    """The plans of the statements run inside ``statement`` (auto_explain, JSON)."""
    plans: list[dict[str, Any]] = []

    def keep(notice: psycopg.errors.Diagnostic) -> None:
        text = notice.message_primary or ""
        if "{" in text:
            plans.append(json.loads(text[text.index("{") :]))

    conn.add_notice_handler(keep)
    try:
        conn.execute("LOAD 'auto_explain'")
        for name, value in (
            ("auto_explain.log_min_duration", "0"),
            ("auto_explain.log_nested_statements", "on"),
            ("auto_explain.log_format", "json"),
            ("auto_explain.log_level", "notice"),
        ):
            conn.execute("SELECT set_config(%s, %s, false)", (name, value))
        conn.execute(statement, params).fetchall()
        conn.execute("SET auto_explain.log_min_duration = -1")
    finally:
        conn.remove_notice_handler(keep)
    return plans


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def test_generic_plans_read_the_newest_partition_through_its_primary_key(db: Conn) -> None:
    tenant = f"plan-{uuid.uuid4().hex[:8]}"
    _insert(db, tenant, "d", [f"{m} minutes" for m in range(1, 30)])
    db.execute("ANALYZE constitutional_validations")
    db.execute("SET plan_cache_mode = force_generic_plan")
    history = load_sql("queries/history")
    db.execute(sql.SQL("PREPARE walk AS {}").format(sql.SQL(history)))
    outer = db.execute(
        "EXPLAIN (FORMAT JSON) EXECUTE walk (%s, 'd', %s, 10)", (tenant, HASH)
    ).fetchone()
    assert outer is not None
    top = outer[0][0]["Plan"]
    assert (top["Node Type"], top.get("Function Name")) == ("Function Scan", "acgs_history")
    for _ in range(7):  # past plpgsql's custom plans, were they allowed
        inner = _inner_plans(db, "EXECUTE walk (%s, 'd', %s, 10)", (tenant, HASH))
    reads = [
        node
        for entry in inner
        for node in _nodes(entry["Plan"])
        if node.get("Relation Name", "").startswith("constitutional_validations_p")
        and node.get("Parent Relationship") != "InitPlan"
        and node["Node Type"] in ("Index Scan", "Seq Scan", "Bitmap Heap Scan")
        and node.get("Rows Removed by Filter") is None
    ]
    limit_scans = [n for n in reads if n["Node Type"] == "Index Scan"]
    assert limit_scans, inner
    for scan in limit_scans:
        assert scan["Scan Direction"] == "Backward"
        assert scan["Index Name"].endswith("_pkey")
    assert not [n for entry in inner for n in _nodes(entry["Plan"]) if n["Node Type"] == "Sort"]


@pytest.fixture
def tenant_logins(db: Conn, migrated_database: str) -> Iterator[dict[str, str]]:
    suffix = uuid.uuid4().hex[:8]
    urls = {
        "a": create_login(db, f"walk_a_{suffix}", SETTINGS.tenant_role),
        "unbound": create_login(db, f"walk_u_{suffix}", SETTINGS.tenant_role),
        "reader": create_login(db, f"walk_r_{suffix}", SETTINGS.reader_role),
        "nobody": create_login(db, f"walk_n_{suffix}"),
    }
    tenants.grant(migrated_database, f"walk_a_{suffix}", f"ta-{suffix}", SETTINGS)
    urls["tenant"] = f"ta-{suffix}"
    yield urls
    tenants.revoke(migrated_database, f"walk_a_{suffix}", SETTINGS)
    for name in ("a", "u", "r", "n"):
        db.execute(
            sql.SQL("DROP OWNED BY {0}; DROP ROLE {0}").format(
                sql.Identifier(f"walk_{name}_{suffix}")
            )
        )


def test_tenant_logins_see_their_own_tenant_only(db: Conn, tenant_logins: dict[str, str]) -> None:
    mine, other = tenant_logins["tenant"], f"other-{uuid.uuid4().hex[:8]}"
    _insert(db, mine, "shared", ["1 minute", "2 minutes", "40 days"])
    _insert(db, other, "shared", ["1 minute", "200 days"])  # one in the default partition
    scoped = "history_scoped"
    with psycopg.connect(tenant_logins["a"], autocommit=True) as a:
        assert _walk(a, mine, "shared", 10, scoped) == _parent(db, mine, "shared", 10)
        assert len(_walk(a, mine, "shared", 10, scoped)) == 3
        assert _walk(a, other, "shared", 10, scoped) == []
        a.execute("SET ROLE NONE")
        a.execute("SELECT set_config('acgs.tenant_id', %s, false)", (other,))
        assert _walk(a, other, "shared", 10, scoped) == []
        # What the table itself shows this login: the same rows.
        assert _parent(a, mine, "shared", 10) == _walk(a, mine, "shared", 10, scoped)
        # Neither the service roles' look-up nor the partitions themselves are open to it.
        for attempt in (
            lambda: _walk(a, other, "shared", 10),
            lambda: a.execute("SELECT count(*) FROM constitutional_validations_default"),
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                attempt()
    with psycopg.connect(tenant_logins["unbound"], autocommit=True) as unbound:
        assert _walk(unbound, mine, "shared", 10, scoped) == []
    with psycopg.connect(tenant_logins["reader"], autocommit=True) as reader:
        assert _walk(reader, other, "shared", 10) == _parent(db, other, "shared", 10)
        assert len(_walk(reader, other, "shared", 10)) == 2
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            _walk(reader, other, "shared", 10, scoped)
    with psycopg.connect(tenant_logins["nobody"], autocommit=True) as nobody:
        for query in ("history", scoped):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                _walk(nobody, mine, "shared", 10, query)


def test_both_look_ups_are_the_same_walk(db: Conn) -> None:
    tenant = f"same-{uuid.uuid4().hex[:8]}"
    _insert(db, tenant, "d", ["1 minute", "40 days", "200 days", "-45 days"])
    for limit in LIMITS:
        assert _walk(db, tenant, "d", limit, "history_scoped") == _parent(db, tenant, "d", limit)


def test_limits_behave_like_the_parent_query(db: Conn) -> None:
    tenant = f"lim-{uuid.uuid4().hex[:8]}"
    _insert(db, tenant, "d", ["1 minute", "2 minutes"])
    assert _walk(db, tenant, "d", 0) == []
    with pytest.raises(psycopg.errors.InvalidRowCountInLimitClause):
        _walk(db, tenant, "d", -1)
