-- The 24-hour view's rows, its columns in the order of the seed's SQL (compared with EXCEPT).
SELECT tenant_id, constitutional_hash, avg_compliance_score, total_validations,
       failed_validations, avg_processing_time_ms, p95_processing_time_ms,
       p99_processing_time_ms, constitutional_violations, last_updated
FROM tenant_constitutional_metrics_24h
