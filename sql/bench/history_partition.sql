-- pgbench: the baseline of the history look-up, the same query run directly on the one
-- partition holding the data (acgs-db bench pgbench --script history --partition-baseline).
-- The wrapper replaces PARTITION_NAME with that partition's quoted name, read from the catalog
-- (the partition with the most rows); nothing else is substituted.
\set t random(0, :tenants - 1)
\set k random(0, :decisions - 1)
SELECT id, tenant_id, decision_id, constitutional_hash, compliance_score,
       validation_details, processing_time_ms, created_at
FROM PARTITION_NAME
WHERE tenant_id = 'tenant-' || lpad(:t::text, 4, '0')
  AND decision_id = 'decision-' || lpad(:t::text, 4, '0') || '-' || lpad(:k::text, 7, '0')
  AND constitutional_hash = 'cdd01ef066bc6cf2'
ORDER BY created_at DESC, id DESC
LIMIT 10;
