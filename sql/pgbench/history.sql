-- pgbench: the history look-up (sql/queries/history.sql) of a random tenant and decision.
-- pgbench cannot build strings, so the server spells the loader's ids from two integers
-- (acgs_db.synthetic.tenant_name / decision_name); -D tenants=.. -D decisions=.. come from
-- the wrapper (acgs-db bench pgbench).
\set t random(0, :tenants - 1)
\set k random(0, :decisions - 1)
SELECT id, tenant_id, decision_id, constitutional_hash, compliance_score,
       validation_details, processing_time_ms, created_at
FROM constitutional_validations
WHERE tenant_id = 'tenant-' || lpad(:t::text, 4, '0')
  AND decision_id = 'decision-' || lpad(:t::text, 4, '0') || '-' || lpad(:k::text, 7, '0')
  AND constitutional_hash = 'cdd01ef066bc6cf2'
ORDER BY created_at DESC, id DESC
LIMIT 10;
