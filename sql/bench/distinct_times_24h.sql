-- Distinct processing times of tenant $1 in its last 24 hours.
SELECT count(DISTINCT processing_time_ms) FROM constitutional_validations
WHERE tenant_id = $1 AND created_at >= now() - interval '24 hours'
