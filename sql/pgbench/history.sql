-- pgbench: the history look-up (sql/queries/history.sql) of a random tenant and decision.
-- pgbench cannot build strings, so the server spells the loader's ids from two integers
-- (acgs_db.synthetic.tenant_name / decision_name); -D tenants=.. -D decisions=.. come from
-- the wrapper (acgs-db bench pgbench).
\set t random(0, :tenants - 1)
\set k random(0, :decisions - 1)
SELECT id, tenant_id, decision_id, constitutional_hash, compliance_score,
       validation_details, processing_time_ms, created_at
FROM acgs_history(p_tenant => 'tenant-' || lpad(:t::text, 4, '0'),
                  p_decision => 'decision-' || lpad(:t::text, 4, '0') || '-' || lpad(:k::text, 7, '0'),
                  p_hash => 'cdd01ef066bc6cf2', p_limit => 10);
