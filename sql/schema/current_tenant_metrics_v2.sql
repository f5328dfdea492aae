-- The 24-hour figures of the tenant bound to this session's login (migration 0007), computed
-- right now from the rollup. SECURITY DEFINER: tenant logins have no privilege on the rollup or
-- the raw partitions; the tenant comes from acgs_session_tenant(), never from the caller.
CREATE OR REPLACE FUNCTION current_tenant_metrics_24h()
RETURNS SETOF tenant_metrics_24h_current
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path FROM CURRENT
AS $fn$
BEGIN
    RETURN QUERY
    SELECT m.tenant_id::varchar(50), m.constitutional_hash::varchar(20),
           m.avg_compliance_score, m.total_validations, m.failed_validations,
           m.avg_processing_time_ms, m.p95_processing_time_ms,
           m.p99_processing_time_ms, m.constitutional_violations, m.last_updated
    FROM tenant_metrics_24h(acgs_session_tenant()) AS m;
END
$fn$
