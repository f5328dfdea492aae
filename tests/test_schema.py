"""The schema after ``alembic upgrade head``, read from the catalog of a real server."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest
from conftest import bypass_append_only


def _scalar(conn: psycopg.Connection, sql: str, *params: object) -> object:
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return row[0]


def test_validations_table_is_range_partitioned_by_created_at(conn: psycopg.Connection) -> None:
    strategy, key = conn.execute(
        """
        SELECT p.partstrat, pg_get_partkeydef(p.partrelid)
        FROM pg_partitioned_table p
        WHERE p.partrelid = 'constitutional_validations'::regclass
        """
    ).fetchone() or (None, None)
    assert strategy == "r"
    assert key == "RANGE (created_at)"


def test_monthly_partitions_cover_now_and_three_months_ahead(conn: psycopg.Connection) -> None:
    bounds: list[tuple[str, str]] = conn.execute(
        """
        SELECT c.relname, pg_get_expr(c.relpartbound, c.oid)
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'constitutional_validations'::regclass
        ORDER BY c.relname
        """
    ).fetchall()
    names = [name for name, _ in bounds]
    assert "constitutional_validations_default" in names
    assert dict(bounds)["constitutional_validations_default"] == "DEFAULT"
    now = datetime.now(UTC)
    month = now.year * 12 + now.month - 1
    for ahead in range(4):  # this month and at least three premade ones
        y, m = divmod(month + ahead, 12)
        assert f"constitutional_validations_p{y}_{m + 1:02d}" in names


def test_partman_manages_the_table_with_retention(conn: psycopg.Connection) -> None:
    row = conn.execute(
        """
        SELECT partition_interval, premake, retention::interval = interval '13 months',
               retention_keep_table, infinite_time_partitions, template_table
        FROM partman.part_config
        WHERE parent_table = 'public.constitutional_validations'
        """
    ).fetchone()
    assert row is not None
    interval, premake, thirteen_months, keep_table, infinite, template = row
    assert interval == "1 mon"
    assert premake >= 3
    assert thirteen_months is True
    assert keep_table is False
    assert infinite is True
    assert _scalar(conn, "SELECT to_regclass(%s) IS NOT NULL", template) is True


def test_check_constraint_rejects_a_wrong_hash_in_plain_sql(conn: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.CheckViolation, match="hash_check"):
        conn.execute(
            "INSERT INTO constitutional_validations (tenant_id, decision_id, constitutional_hash,"
            " compliance_score) VALUES ('t', 'd', 'deadbeefdeadbeef', 0.5)"
        )


@pytest.mark.parametrize(
    ("column", "value", "constraint"),
    [
        ("compliance_score", "1.5", "score_check"),
        ("compliance_score", "-0.1", "score_check"),
        ("compliance_score", "NaN", "score_check"),
        ("processing_time_ms", "-1", "processing_time_check"),
    ],
)
def test_check_constraints_reject_out_of_range_values(
    conn: psycopg.Connection, column: str, value: str, constraint: str
) -> None:
    values = {"compliance_score": "0.5", "processing_time_ms": "1"}
    values[column] = value
    with pytest.raises(psycopg.errors.CheckViolation, match=constraint):
        conn.execute(
            "INSERT INTO constitutional_validations (tenant_id, decision_id, compliance_score,"
            " processing_time_ms) VALUES ('t', 'd', %s::numeric, %s::int)",
            (values["compliance_score"], values["processing_time_ms"]),
        )


def test_required_columns_are_not_null(conn: psycopg.Connection) -> None:
    nullable: dict[str, bool] = dict(
        conn.execute(
            """
            SELECT attname, NOT attnotnull FROM pg_attribute
            WHERE attrelid = 'constitutional_validations'::regclass AND attnum > 0
            """
        ).fetchall()
    )
    assert nullable == {
        "id": False,
        "tenant_id": False,
        "decision_id": False,
        "constitutional_hash": False,
        "compliance_score": False,
        "validation_details": True,
        "processing_time_ms": True,
        "created_at": False,
    }


def test_primary_key_holds_tenant_and_partition_key(conn: psycopg.Connection) -> None:
    definition = _scalar(
        conn,
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = 'constitutional_validations'::regclass AND contype = 'p'",
    )
    assert definition == "PRIMARY KEY (tenant_id, decision_id, created_at, id)"


def test_index_definitions(conn: psycopg.Connection) -> None:
    indexes: dict[str, str] = dict(
        conn.execute(
            "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index "
            "WHERE indrelid = 'constitutional_validations'::regclass"
        ).fetchall()
    )
    assert indexes["idx_constitutional_validations_tenant_hash_time"].endswith(
        "USING btree (tenant_id, constitutional_hash, created_at DESC)"
        " INCLUDE (compliance_score, processing_time_ms)"
    )
    assert indexes["idx_constitutional_validations_decision_lookup"].endswith(
        "USING btree (decision_id, constitutional_hash)"
        " INCLUDE (compliance_score, processing_time_ms)"
    )
    assert "USING brin (created_at)" in indexes["idx_constitutional_validations_created_brin"]
    # No index that a query relies on may be partial: a generic plan could not use it.
    assert not any(" WHERE " in d for d in indexes.values())


def test_every_partition_carries_the_parent_indexes(conn: psycopg.Connection) -> None:
    counts = conn.execute(
        """
        SELECT c.relname, count(x.indexrelid)
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        LEFT JOIN pg_index x ON x.indrelid = c.oid
        WHERE i.inhparent = 'constitutional_validations'::regclass
        GROUP BY c.relname
        """
    ).fetchall()
    assert counts
    assert {n for _, n in counts} == {4}


def test_the_metrics_view_and_its_unique_index(conn: psycopg.Connection) -> None:
    columns = [
        r[0]
        for r in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = "
            "'tenant_constitutional_metrics_24h'::regclass AND attnum > 0 ORDER BY attnum"
        ).fetchall()
    ]
    assert columns == [
        "tenant_id",
        "constitutional_hash",
        "avg_compliance_score",
        "total_validations",
        "failed_validations",
        "avg_processing_time_ms",
        "p95_processing_time_ms",
        "p99_processing_time_ms",
        "constitutional_violations",
        "last_updated",
    ]
    unique = _scalar(
        conn,
        "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indisunique "
        "AND indrelid = 'tenant_constitutional_metrics_24h'::regclass",
    )
    assert "(tenant_id, constitutional_hash)" in str(unique)


def test_refresh_function_is_security_definer_with_pinned_search_path(
    conn: psycopg.Connection,
) -> None:
    secdef, config = conn.execute(
        "SELECT prosecdef, proconfig FROM pg_proc WHERE proname = 'refresh_tenant_metrics_24h'"
    ).fetchone() or (None, None)
    assert secdef is True
    assert any(c.startswith("search_path=") and "pg_temp" in c for c in config)


def test_decision_cache_is_unlogged_and_keyed_for_lookup(conn: psycopg.Connection) -> None:
    persistence = _scalar(
        conn,
        "SELECT relpersistence FROM pg_class WHERE oid = 'decision_validation_cache'::regclass",
    )
    assert persistence == "u"
    key = _scalar(
        conn,
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = 'decision_validation_cache'::regclass AND contype = 'p'",
    )
    assert key == "PRIMARY KEY (tenant_id, decision_hash, constitutional_hash)"


def test_rows_outside_premade_partitions_land_in_default(conn: psycopg.Connection) -> None:
    tenant = "t-old-rows"
    conn.execute(
        "INSERT INTO constitutional_validations (tenant_id, decision_id, compliance_score,"
        " created_at) VALUES (%s, 'd', 0.5, '2001-01-01T00:00:00Z')",
        (tenant,),
    )
    where = _scalar(
        conn,
        "SELECT tableoid::regclass::text FROM constitutional_validations WHERE tenant_id = %s",
        tenant,
    )
    assert where == "constitutional_validations_default"
    bypass_append_only(
        conn, "DELETE FROM constitutional_validations WHERE tenant_id = %s", (tenant,)
    )
