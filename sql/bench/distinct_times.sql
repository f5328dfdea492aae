-- Distinct processing times of tenant $1 (the rollup keeps a row per value).
SELECT count(DISTINCT processing_time_ms) FROM constitutional_validations WHERE tenant_id = $1
