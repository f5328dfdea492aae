-- Empty the audit tables between benchmark rounds (scratch databases only).
TRUNCATE constitutional_validations, validation_rollup, validation_rollup_delta, ingest_batches,
    rollup_totals_hour, rollup_bins_day
