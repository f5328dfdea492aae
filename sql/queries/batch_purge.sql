-- One bounded step of the batch ledger's purge: at most $2 rows older than $1 seconds
-- (ingest_batches_purge(), migration 0012); returns the rows deleted.
SELECT ingest_batches_purge(make_interval(secs => $1), $2)
