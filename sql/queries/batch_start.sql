-- Start of an audit-writer batch, in one round trip: claim batch id $1 for its $2 rows (digest
-- $4) in the ledger (no claim back means a transaction that already committed this batch: a retry writes
-- nothing; a concurrent claim waits for it to finish), the server's transaction time (what
-- DEFAULT now() gives the rows), and whether row-level security applies to this role on the
-- table (then COPY FROM is refused and rows go through the staging table). The transaction's
-- statements are bounded by $3 (the COPY's timeout, '0' for none) instead of the session's
-- statement_timeout, in the same round trip.
WITH claim AS (
    INSERT INTO ingest_batches (batch_id, rows, digest)
    VALUES ($1, $2, $4)
    ON CONFLICT (batch_id) DO NOTHING
    RETURNING batch_id
)
SELECT now(), row_security_active('constitutional_validations'), EXISTS (SELECT 1 FROM claim),
       set_config('statement_timeout', $3, true)
