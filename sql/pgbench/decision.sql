-- pgbench: the decision look-up (sql/queries/decision_scores.sql) of a random decision: an
-- index-only scan of idx_constitutional_validations_decision_lookup.
\set t random(0, :tenants - 1)
\set k random(0, :decisions - 1)
SELECT decision_id, compliance_score, processing_time_ms
FROM constitutional_validations
WHERE decision_id = 'decision-' || lpad(:t::text, 4, '0') || '-' || lpad(:k::text, 7, '0')
  AND constitutional_hash = 'cdd01ef066bc6cf2';
