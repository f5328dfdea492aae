-- pgbench: a random tenant's 24-hour figures (sql/queries/metrics.sql): from the materialized
-- view while it is fresher than :staleness (the wrapper refreshes it before the run and passes
-- ACGS_METRICS_STALENESS), else computed right now by tenant_metrics_24h().
\set t random(0, :tenants - 1)
WITH fresh AS (
    SELECT 'view'::text AS source, tenant_id, constitutional_hash, avg_compliance_score,
           total_validations, failed_validations, avg_processing_time_ms,
           p95_processing_time_ms, p99_processing_time_ms, constitutional_violations,
           last_updated AS as_of
    FROM tenant_constitutional_metrics_24h
    WHERE tenant_id = 'tenant-' || lpad(:t::text, 4, '0')
      AND constitutional_hash = 'cdd01ef066bc6cf2'
      AND last_updated >= now() - :staleness::interval
)
SELECT * FROM fresh
UNION ALL
SELECT 'realtime', m.*
FROM tenant_metrics_24h('tenant-' || lpad(:t::text, 4, '0')) AS m
WHERE NOT EXISTS (SELECT 1 FROM fresh);
