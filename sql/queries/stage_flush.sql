-- Move the staged rows into the table in one statement (row-level security checks each).
INSERT INTO constitutional_validations
    (tenant_id, decision_id, constitutional_hash, compliance_score,
     validation_details, processing_time_ms, created_at)
SELECT tenant_id, decision_id, constitutional_hash, compliance_score,
       validation_details, processing_time_ms, created_at
FROM acgs_ingest_stage
