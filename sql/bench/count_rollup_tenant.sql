-- Rollup rows of tenant $1.
SELECT count(*) FROM validation_rollup WHERE tenant_id = $1
