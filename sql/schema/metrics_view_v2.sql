-- tenant_constitutional_metrics_24h computed from the rollup: the tenants with any bucket in
-- the window (rolled up or pending), each through tenant_metrics_24h(). Same name, columns
-- and types as the seed's definition (seed_metrics_24h.sql), and exactly its figures.
SELECT m.tenant_id::varchar(50) AS tenant_id,
       m.constitutional_hash::varchar(20) AS constitutional_hash,
       m.avg_compliance_score,
       m.total_validations,
       m.failed_validations,
       m.avg_processing_time_ms,
       m.p95_processing_time_ms,
       m.p99_processing_time_ms,
       m.constitutional_violations,
       m.last_updated
FROM (
    SELECT r.tenant_id FROM validation_rollup r
    WHERE r.bucket >= rollup_bucket(now() - interval '24 hours')
    UNION
    SELECT d.tenant_id FROM validation_rollup_delta d
    WHERE d.bucket >= rollup_bucket(now() - interval '24 hours')
) AS t
CROSS JOIN LATERAL tenant_metrics_24h(t.tenant_id) AS m
