-- Record how many rows the batch wrote and their digest (acgs_db.digest), in the same
-- transaction as the rows.
UPDATE ingest_batches SET rows = $2, digest = $3 WHERE batch_id = $1
