-- Scores and times of every validation of a decision: an index-only scan of
-- idx_constitutional_validations_decision_lookup (decision_id, constitutional_hash)
-- INCLUDE (compliance_score, processing_time_ms).
SELECT decision_id, compliance_score, processing_time_ms
FROM constitutional_validations
WHERE decision_id = $1
  AND constitutional_hash = $2
