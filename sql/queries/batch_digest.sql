-- The digest of a committed batch (NULL for batches written before migration 0009), read
-- after its claim found it committed.
SELECT digest FROM ingest_batches WHERE batch_id = $1
