-- A tenant's validations of one decision, newest first.
-- Served by the primary key (tenant_id, decision_id, created_at, id), scanned backwards.
SELECT id, tenant_id, decision_id, constitutional_hash, compliance_score,
       validation_details, processing_time_ms, created_at
FROM constitutional_validations
WHERE tenant_id = $1
  AND decision_id = $2
  AND constitutional_hash = $3
ORDER BY created_at DESC, id DESC
LIMIT $4
