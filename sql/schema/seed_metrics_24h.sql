-- The seed's definition of tenant_constitutional_metrics_24h (seed 000, section 3), verbatim.
-- Migration 0001 creates the view from it; the rollup (0003) must give exactly its figures,
-- and the tests compare against it.
SELECT
    tenant_id,
    constitutional_hash,
    AVG(compliance_score) as avg_compliance_score,
    COUNT(*) as total_validations,
    COUNT(*) FILTER (WHERE compliance_score < 0.95) as failed_validations,
    AVG(processing_time_ms) as avg_processing_time_ms,
    PERCENTILE_CONT(0.95) WITHIN GROUP (ORDER BY processing_time_ms) as p95_processing_time_ms,
    PERCENTILE_CONT(0.99) WITHIN GROUP (ORDER BY processing_time_ms) as p99_processing_time_ms,
    COUNT(*) FILTER (WHERE compliance_score < 0.90) as constitutional_violations,
    NOW() as last_updated
FROM constitutional_validations
WHERE created_at >= NOW() - INTERVAL '24 hours'
  AND constitutional_hash = 'cdd01ef066bc6cf2'
GROUP BY tenant_id, constitutional_hash
