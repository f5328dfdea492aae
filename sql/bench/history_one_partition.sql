-- The history look-up (sql/queries/history.sql before migration 0013) run directly on one
-- partition: the raw asyncpg baseline of `acgs-db bench repository`. PARTITION_NAME is replaced
-- with the server-quoted name of the partition holding the most rows, read from the catalog.
SELECT id, tenant_id, decision_id, constitutional_hash, compliance_score,
       validation_details, processing_time_ms, created_at
FROM PARTITION_NAME
WHERE tenant_id = $1
  AND decision_id = $2
  AND constitutional_hash = $3
ORDER BY created_at DESC, id DESC
LIMIT $4
