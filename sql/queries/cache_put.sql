-- Store or replace a decision validation result; its age restarts at now().
INSERT INTO decision_validation_cache AS c
    (tenant_id, decision_hash, constitutional_hash, validation_score,
     compliance_details, requirements, created_at)
VALUES ($1, $2, $3, $4, $5, $6, now())
ON CONFLICT (tenant_id, decision_hash, constitutional_hash) DO UPDATE
SET validation_score = EXCLUDED.validation_score,
    compliance_details = EXCLUDED.compliance_details,
    requirements = EXCLUDED.requirements,
    created_at = EXCLUDED.created_at
