-- Whether a multi-connection batch was decided: its ledger row is committed.
SELECT EXISTS (SELECT 1 FROM ingest_batches WHERE token = $1)
