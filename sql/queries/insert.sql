-- One validation; a NULL created_at takes the server's transaction time.
INSERT INTO constitutional_validations
    (tenant_id, decision_id, constitutional_hash, compliance_score,
     validation_details, processing_time_ms, created_at)
VALUES ($1, $2, $3, $4, $5, $6, COALESCE($7, now()))
RETURNING id
