-- The repository's real-time and ranged figures (sql/queries/metrics_realtime.sql,
-- metrics_range.sql), planned once per session (v1: migration 0015; v2: migration 0018).
-- tenant_metrics_24h() and tenant_metrics_range() are plain SQL, inlined into the caller's
-- statement and planned with it: v4 of the first took ~5 ms to plan for ~2 ms to run, and a
-- prepared statement under plan_cache_mode = auto kept choosing custom plans (planned at every
-- call: p50 4.5 against 2.1 ms with a kept generic plan, measured in the same run); behind
-- PgBouncer in transaction mode every statement is unnamed, so planned at every call too.
-- PL/pgSQL keeps the plan of its one statement for the session, and force_generic_plan makes it
-- the generic plan that the plan tests check (tests/test_metrics_range.py). search_path is
-- pinned at creation, as for the SQL-standard bodies they call.
-- v2 adds jit = off. A generic plan estimates a tenant's rows as the table's rows over the
-- number of tenants, so with few tenants and many rows its cost passes jit_above_cost (100,000)
-- and every call compiled the plan first: tenant_metrics_24h() v6 in a database of 5 tenants
-- and 2.2M rows, p50 156 ms a call with JIT against 3.3 ms without; the ranged figures with
-- empty statistics 0.29-0.44 s a call. These statements read a few thousand rows by index; JIT never pays here.
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
SET jit = off
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
SET jit = off
AS $fn$
BEGIN
    RETURN QUERY SELECT * FROM tenant_metrics_range(p_tenant, p_since, p_until);
END
$fn$;
