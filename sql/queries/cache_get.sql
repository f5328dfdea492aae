-- A cached decision validation, only while younger than $4 (primary-key look-up).
SELECT tenant_id, decision_hash, validation_score, compliance_details, requirements, created_at
FROM decision_validation_cache
WHERE tenant_id = $1
  AND decision_hash = $2
  AND constitutional_hash = $3
  AND now() - created_at < $4::interval
