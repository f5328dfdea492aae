-- A tenant's 24-hour figures: from the materialized view when it holds the tenant and was
-- refreshed within $3, else computed right now by tenant_metrics_24h() (rollup + pending
-- deltas + the raw edge bucket). The real-time branch is gated by a one-time filter, so it
-- costs nothing when the view answers.
WITH fresh AS (
    SELECT 'view'::text AS source, tenant_id, constitutional_hash, avg_compliance_score,
           total_validations, failed_validations, avg_processing_time_ms,
           p95_processing_time_ms, p99_processing_time_ms, constitutional_violations,
           last_updated AS as_of
    FROM tenant_constitutional_metrics_24h
    WHERE tenant_id = $1
      AND constitutional_hash = $2
      AND last_updated >= now() - $3::interval
)
SELECT * FROM fresh
UNION ALL
SELECT 'realtime', m.*
FROM tenant_metrics_24h($1) AS m
WHERE NOT EXISTS (SELECT 1 FROM fresh)
