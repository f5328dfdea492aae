-- Claim a batch id inside the bulk insert's transaction. No row back means another
-- transaction already committed this batch (a concurrent claim waits for it to finish).
INSERT INTO ingest_batches (batch_id, parts, token)
VALUES ($1, $2, $3)
ON CONFLICT (batch_id) DO NOTHING
RETURNING batch_id
