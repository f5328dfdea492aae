-- Fold the rollup's pending deltas (returns the delta rows folded).
SELECT fold_validation_rollup()
