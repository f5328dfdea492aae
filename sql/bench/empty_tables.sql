-- Empty the audit tables and the ledger between benchmark rounds (scratch databases only; a
-- superuser: the tables are append-only, migration 0010, so their triggers are bypassed here).
DO $empty$
BEGIN
    SET LOCAL session_replication_role = replica;
    TRUNCATE constitutional_validations, validation_rollup, validation_rollup_delta,
             ingest_batches, ledger_entries, ledger_blocks, rollup_totals_hour,
             rollup_bins_day, rollup_bins_day_coarse, rollup_bins_hour;
END
$empty$
