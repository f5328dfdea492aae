-- The verifier's baseline: a sequential scan of the same rows and columns, streamed to the
-- client in no particular order.
SELECT id, tenant_id, decision_id, constitutional_hash, compliance_score::text,
       validation_details::text, processing_time_ms, created_at
FROM constitutional_validations
