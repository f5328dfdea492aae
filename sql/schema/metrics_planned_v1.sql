-- The repository's real-time and ranged figures (sql/queries/metrics_realtime.sql,
-- metrics_range.sql), planned once per session (migration 0015). tenant_metrics_24h() and
-- tenant_metrics_range() are plain SQL, inlined into the caller's statement and planned with
-- it: v4 of the first took ~5 ms to plan for ~2 ms to run, and a prepared statement under
-- plan_cache_mode = auto kept choosing custom plans (planned at every call: p50 4.5 against
-- 2.1 ms with a kept generic plan, measured in the same run); behind PgBouncer in transaction
-- mode every statement is unnamed, so planned at every call too. PL/pgSQL keeps the plan of its
-- one statement for the session, and force_generic_plan makes it the generic plan that the plan
-- tests check (tests/test_metrics_range.py). search_path is pinned at creation, as for the
-- SQL-standard bodies they call.
CREATE OR REPLACE FUNCTION tenant_metrics_24h_planned(p_tenant varchar)
RETURNS TABLE (
    tenant_id varchar,
    constitutional_hash varchar,
    avg_compliance_score numeric,
    total_validations bigint,
    failed_validations bigint,
    avg_processing_time_ms numeric,
    p95_processing_time_ms double precision,
    p99_processing_time_ms double precision,
    constitutional_violations bigint,
    last_updated timestamptz
)
LANGUAGE plpgsql STABLE
SET search_path FROM CURRENT
SET plan_cache_mode = force_generic_plan
AS $fn$
BEGIN
    RETURN QUERY SELECT * FROM tenant_metrics_24h(p_tenant);
END
$fn$;

CREATE OR REPLACE FUNCTION tenant_metrics_range_planned(
    p_tenant varchar, p_since timestamptz, p_until timestamptz)
RETURNS TABLE (
    tenant_id varchar,
    constitutional_hash varchar,
    avg_compliance_score numeric,
    total_validations bigint,
    failed_validations bigint,
    avg_processing_time_ms numeric,
    p95_processing_time_ms double precision,
    p99_processing_time_ms double precision,
    constitutional_violations bigint,
    last_updated timestamptz
)
LANGUAGE plpgsql STABLE
SET search_path FROM CURRENT
SET plan_cache_mode = force_generic_plan
AS $fn$
BEGIN
    RETURN QUERY SELECT * FROM tenant_metrics_range(p_tenant, p_since, p_until);
END
$fn$;
