-- A tenant's 24-hour figures: from the materialized view when it holds the tenant and was
-- refreshed within $3, else computed from the table right now. The realtime branch is gated
-- by a one-time filter, so it costs nothing when the view answers.
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
SELECT 'realtime', tenant_id, constitutional_hash, AVG(compliance_score), COUNT(*),
       COUNT(*) FILTER (WHERE compliance_score < 0.95), AVG(processing_time_ms),
       PERCENTILE_CONT(0.95) WITHIN GROUP (ORDER BY processing_time_ms),
       PERCENTILE_CONT(0.99) WITHIN GROUP (ORDER BY processing_time_ms),
       COUNT(*) FILTER (WHERE compliance_score < 0.90), now()
FROM constitutional_validations
WHERE tenant_id = $1
  AND constitutional_hash = $2
  AND created_at >= now() - INTERVAL '24 hours'
  AND NOT EXISTS (SELECT 1 FROM fresh)
GROUP BY tenant_id, constitutional_hash
