-- (tenant, decision) pairs that exist, for look-up benchmarks: a 1 % block sample, topped up
-- with the first rows when the sample comes back short (on a small table a block sample may be
-- empty).
SELECT tenant_id, decision_id
FROM (
    (SELECT tenant_id, decision_id, 0 AS pass
     FROM constitutional_validations TABLESAMPLE SYSTEM (1)
     LIMIT $1)
    UNION ALL
    (SELECT tenant_id, decision_id, 1
     FROM constitutional_validations
     LIMIT $1)
) AS sampled
ORDER BY pass
LIMIT $1
