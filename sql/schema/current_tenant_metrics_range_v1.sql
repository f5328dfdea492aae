-- The figures over [p_since, p_until) of the tenant bound to this session's login (migration
-- 0007), computed right now by tenant_metrics_range(). SECURITY DEFINER with a pinned
-- search_path: tenant logins have no privilege on the rollup or on other tenants' raw rows; the
-- tenant comes from acgs_session_tenant(), never from the caller. PL/pgSQL so that its plan is
-- cached for the session (a definer function is never inlined).
CREATE OR REPLACE FUNCTION current_tenant_metrics_range(p_since timestamptz, p_until timestamptz)
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
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path FROM CURRENT
AS $fn$
BEGIN
    RETURN QUERY
    SELECT m.tenant_id, m.constitutional_hash, m.avg_compliance_score, m.total_validations,
           m.failed_validations, m.avg_processing_time_ms, m.p95_processing_time_ms,
           m.p99_processing_time_ms, m.constitutional_violations, m.last_updated
    FROM tenant_metrics_range(acgs_session_tenant(), p_since, p_until) AS m;
END
$fn$
