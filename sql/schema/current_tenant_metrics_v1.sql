-- current_tenant_metrics_24h() as migration 0005 made it (0007's downgrade restores it): the
-- 24-hour figures of the tenant named by the setting acgs.tenant_id, computed right now.
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
    FROM tenant_metrics_24h(current_setting('acgs.tenant_id', true)) AS m;
END
$fn$
