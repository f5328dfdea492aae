-- Start of an audit-writer batch, in one statement: one round trip, one implicit transaction and
-- one commit (batches up to acgs_db.writer.STATEMENT_MAX rows; larger ones COPY).
-- The CTE claims batch id $1 in the ledger (with the batch's row count and digest $9); the
-- rows, sent as one array per column, are inserted only when the claim succeeded. No claim
-- means a transaction that already committed this batch (a retry after an ambiguous commit):
-- nothing is inserted ("INSERT 0 0"); a concurrent claim of the same id waits for it to end.
-- A NULL created_at takes the transaction's time, as the column's default and COPY do. The
-- ledger's statement-level trigger captures the inserted rows like any other insert.
WITH claim AS (
    INSERT INTO ingest_batches (batch_id, rows, digest)
    VALUES ($1, cardinality($2::text[]), $9)
    ON CONFLICT (batch_id) DO NOTHING
    RETURNING batch_id
)
INSERT INTO constitutional_validations
    (tenant_id, decision_id, constitutional_hash, compliance_score,
     validation_details, processing_time_ms, created_at)
SELECT r.tenant_id, r.decision_id, $4, r.compliance_score,
       r.validation_details, r.processing_time_ms, COALESCE(r.created_at, now())
FROM unnest($2::text[], $3::text[], $5::numeric[], $6::jsonb[], $7::integer[],
            $8::timestamptz[])
         AS r(tenant_id, decision_id, compliance_score, validation_details, processing_time_ms,
              created_at)
WHERE EXISTS (SELECT FROM claim)
