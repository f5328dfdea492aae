-- A tenant's 24-hour figures computed from the table (the view's definition for one tenant).
SELECT 'realtime'::text AS source, tenant_id, constitutional_hash, AVG(compliance_score),
       COUNT(*), COUNT(*) FILTER (WHERE compliance_score < 0.95), AVG(processing_time_ms),
       PERCENTILE_CONT(0.95) WITHIN GROUP (ORDER BY processing_time_ms),
       PERCENTILE_CONT(0.99) WITHIN GROUP (ORDER BY processing_time_ms),
       COUNT(*) FILTER (WHERE compliance_score < 0.90), now()
FROM constitutional_validations
WHERE tenant_id = $1
  AND constitutional_hash = $2
  AND created_at >= now() - INTERVAL '24 hours'
GROUP BY tenant_id, constitutional_hash
