-- Fold one bounded slice of the rollup's backlog: the deltas of the $1 oldest hour buckets
-- below the window's line; returns the delta rows folded (0: no backlog).
SELECT fold_rollup_backlog($1::integer)
