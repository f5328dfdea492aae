-- Every validation from an id on, in id order, as the canonical encoding reads its columns.
SELECT id, tenant_id, decision_id, constitutional_hash, compliance_score::text,
       validation_details::text, processing_time_ms, created_at
FROM constitutional_validations
WHERE id >= %(from_id)s
ORDER BY id
