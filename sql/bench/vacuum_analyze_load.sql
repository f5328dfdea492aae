-- After a bulk load and its fold: statistics, the visibility map and hint bits of the validations
-- (index-only scans skip the heap, the first reads rewrite no page), and the dead rows the fold
-- left in the delta queue and the rollup removed (the next refresh would walk them otherwise).
VACUUM (ANALYZE) constitutional_validations, validation_rollup_delta, validation_rollup,
    rollup_totals_hour, rollup_bins_day, rollup_bins_day_coarse, rollup_bins_hour
