-- Record how many rows the batch wrote, in the same transaction as the rows.
UPDATE ingest_batches SET rows = $2 WHERE batch_id = $1
