-- pgbench: the decision-cache look-up (sql/queries/cache_get.sql) of a random tenant and
-- decision, keyed by acgs_db.synthetic.decision_hash (SHA-256 of the decision id, in hex).
-- The loader fills one entry per tenant and decision; the wrapper makes them fresh (younger
-- than :max_age) before the run, so the look-ups hit.
\set t random(0, :tenants - 1)
\set k random(0, :decisions - 1)
SELECT tenant_id, decision_hash, validation_score, compliance_details, requirements, created_at
FROM decision_validation_cache
WHERE tenant_id = 'tenant-' || lpad(:t::text, 4, '0')
  AND decision_hash = encode(sha256(convert_to(
          'decision-' || lpad(:t::text, 4, '0') || '-' || lpad(:k::text, 7, '0'), 'UTF8')), 'hex')
  AND constitutional_hash = 'cdd01ef066bc6cf2'
  AND now() - created_at < :max_age::interval;
