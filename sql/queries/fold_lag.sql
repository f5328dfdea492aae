-- Age in seconds of the oldest write not yet folded into validation_rollup (0 when none).
SELECT rollup_fold_lag()
