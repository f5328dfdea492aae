-- (tenant, decision) pairs that exist, for look-up benchmarks.
SELECT tenant_id, decision_id
FROM constitutional_validations TABLESAMPLE SYSTEM (1)
LIMIT $1
