-- The 24-hour figures of the tenant bound to this tenant login (migration 0007): from the view
-- while refreshed within $1, else computed right now. Both sources filter by
-- acgs_session_tenant(), never by anything the caller names or sets.
WITH fresh AS (
    SELECT 'view'::text AS source, tenant_id, constitutional_hash, avg_compliance_score,
           total_validations, failed_validations, avg_processing_time_ms,
           p95_processing_time_ms, p99_processing_time_ms, constitutional_violations,
           last_updated AS as_of
    FROM tenant_metrics_24h_current
    WHERE last_updated >= now() - $1::interval
)
SELECT * FROM fresh
UNION ALL
SELECT 'realtime', m.*
FROM current_tenant_metrics_24h() AS m
WHERE NOT EXISTS (SELECT 1 FROM fresh)
