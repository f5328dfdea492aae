"""Incremental rollup: the 24-hour view and real-time metrics cost what new rows cost, exactly.

Revision ID: 0003_rollup
Revises: 0002_maintenance
Create Date: 2026-11-26

validation_rollup holds, per tenant, hour bucket and processing_time_ms value (NULL included),
the count, the sum of scores and the counts below 0.95 and 0.90. Statement-level triggers with
transition tables append each write's counts to validation_rollup_delta in the writer's own
transaction; fold_validation_rollup() moves them into the rollup exactly once. The view and
tenant_metrics_24h() read the rollup, the pending deltas and the raw rows of the partial bucket
at the window's edge, and give exactly the seed's figures (percentiles rebuilt from counts).

Lock levels: the three CREATE TRIGGER statements take SHARE ROW EXCLUSIVE on
constitutional_validations (the parent only: statement triggers are not cloned to partitions)
and hold it to the end of the migration, so writes wait while the rollup is backfilled from the
existing rows (reads go on). That makes the backfill exact: no write can fall between the
backfill's snapshot and the triggers. The view is dropped and recreated (ACCESS EXCLUSIVE on
the view: its readers wait for the migration). Everything else is new.
"""

from __future__ import annotations

from alembic import op

from acgs_db.resources import load_sql

revision = "0003_rollup"
down_revision = "0002_maintenance"
branch_labels = None
depends_on = None

# Tables holding data that downgrade() drops: `acgs-db downgrade` refuses (without --yes)
# while any of them holds rows (acgs_db.tooling.schema.downgrade_plan).
DROPS_ON_DOWNGRADE = ("validation_rollup", "validation_rollup_delta")

# Statements here hold no "%": Alembic's offline (--sql) rendering would double it.

_FUNCTIONS = (
    "validation_rollup_capture()",
    "fold_validation_rollup()",
)


def upgrade() -> None:
    # The bucket width lives in one place. An hour: the measurements behind this choice are in
    # the README ("Exact 24-hour metrics").
    op.execute(
        """
        CREATE FUNCTION rollup_width() RETURNS interval
        LANGUAGE sql IMMUTABLE PARALLEL SAFE
        RETURN interval '1 hour'
        """
    )
    op.execute(
        """
        CREATE FUNCTION rollup_bucket(at timestamptz) RETURNS timestamptz
        LANGUAGE sql IMMUTABLE PARALLEL SAFE
        RETURN date_bin(rollup_width(), at, timestamptz '2000-01-01 00:00:00+00')
        """
    )
    # The key covers the counts: a tenant's window is an index-only scan, not one heap page per
    # row (a tenant's buckets are spread over the heap in fold order).
    op.execute(
        """
        CREATE TABLE validation_rollup (
            tenant_id varchar(50) NOT NULL,
            bucket timestamptz NOT NULL,
            processing_time_ms integer,
            validations bigint NOT NULL,
            score_sum numeric NOT NULL,
            below_95 bigint NOT NULL,
            below_90 bigint NOT NULL,
            CONSTRAINT validation_rollup_key
                UNIQUE NULLS NOT DISTINCT (tenant_id, bucket, processing_time_ms)
                INCLUDE (validations, score_sum, below_95, below_90)
        )
        """
    )
    op.execute("CREATE INDEX validation_rollup_bucket ON validation_rollup (bucket)")
    op.execute(
        """
        CREATE TABLE validation_rollup_delta (
            tenant_id varchar(50) NOT NULL,
            bucket timestamptz NOT NULL,
            processing_time_ms integer,
            validations bigint NOT NULL,
            score_sum numeric NOT NULL,
            below_95 bigint NOT NULL,
            below_90 bigint NOT NULL,
            logged_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        "CREATE INDEX validation_rollup_delta_tenant ON validation_rollup_delta (tenant_id, bucket)"
    )

    op.execute(load_sql("schema/rollup_capture_v1"))
    op.execute(load_sql("schema/rollup_fold_v1"))
    for function in _FUNCTIONS:
        op.execute(f"REVOKE ALL ON FUNCTION {function} FROM PUBLIC")
    op.execute(
        """
        CREATE TRIGGER constitutional_validations_rollup_insert
        AFTER INSERT ON constitutional_validations
        REFERENCING NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION validation_rollup_capture()
        """
    )
    op.execute(
        """
        CREATE TRIGGER constitutional_validations_rollup_delete
        AFTER DELETE ON constitutional_validations
        REFERENCING OLD TABLE AS old_rows
        FOR EACH STATEMENT EXECUTE FUNCTION validation_rollup_capture()
        """
    )
    op.execute(
        """
        CREATE TRIGGER constitutional_validations_rollup_update
        AFTER UPDATE ON constitutional_validations
        REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION validation_rollup_capture()
        """
    )
    # Backfill from the rows that exist, under the triggers' lock (see the module docstring).
    op.execute(
        """
        INSERT INTO validation_rollup
            (tenant_id, bucket, processing_time_ms, validations, score_sum, below_95, below_90)
        SELECT tenant_id, rollup_bucket(created_at), processing_time_ms,
               count(*), sum(compliance_score),
               count(*) FILTER (WHERE compliance_score < 0.95),
               count(*) FILTER (WHERE compliance_score < 0.90)
        FROM constitutional_validations
        GROUP BY 1, 2, 3
        """
    )

    op.execute(
        """
        CREATE FUNCTION rollup_fold_lag() RETURNS double precision
        LANGUAGE sql STABLE SECURITY DEFINER
        SET search_path FROM CURRENT
        RETURN (SELECT coalesce(extract(epoch FROM now() - min(logged_at)), 0)::float8
                FROM validation_rollup_delta)
        """
    )
    op.execute("REVOKE ALL ON FUNCTION rollup_fold_lag() FROM PUBLIC")
    op.execute(load_sql("schema/tenant_metrics_24h_v1"))
    op.execute(
        "-- Recreated below in this transaction with the same name and columns: no reader sees\n"
        "-- it missing, and the refresh function is replaced to match.\n"
        "-- squawk-ignore ban-drop-view\n"
        "DROP MATERIALIZED VIEW tenant_constitutional_metrics_24h"
    )
    op.execute(
        "CREATE MATERIALIZED VIEW tenant_constitutional_metrics_24h AS\n"
        + load_sql("schema/metrics_view_v2")
    )
    op.execute(
        """
        -- The view was recreated just above, in this transaction: no reader waits on it.
        -- squawk-ignore require-concurrent-index-creation
        CREATE UNIQUE INDEX tenant_constitutional_metrics_24h_key
            ON tenant_constitutional_metrics_24h (tenant_id, constitutional_hash)
        """
    )
    op.execute(load_sql("schema/refresh_function_v2"))


def downgrade() -> None:
    op.execute("DROP MATERIALIZED VIEW tenant_constitutional_metrics_24h")
    op.execute(
        "CREATE MATERIALIZED VIEW tenant_constitutional_metrics_24h AS\n"
        + load_sql("schema/seed_metrics_24h")
    )
    op.execute(
        """
        CREATE UNIQUE INDEX tenant_constitutional_metrics_24h_key
            ON tenant_constitutional_metrics_24h (tenant_id, constitutional_hash)
        """
    )
    op.execute(load_sql("schema/refresh_function_v1"))
    op.execute("DROP FUNCTION tenant_metrics_24h(varchar)")
    op.execute("DROP FUNCTION rollup_fold_lag()")
    for trigger in ("insert", "delete", "update"):
        op.execute(
            f"DROP TRIGGER constitutional_validations_rollup_{trigger} "
            "ON constitutional_validations"
        )
    for function in _FUNCTIONS:
        op.execute(f"DROP FUNCTION {function}")
    op.execute("DROP TABLE validation_rollup_delta")
    op.execute("DROP TABLE validation_rollup")
    op.execute("DROP FUNCTION rollup_bucket(timestamptz)")
    op.execute("DROP FUNCTION rollup_width()")
