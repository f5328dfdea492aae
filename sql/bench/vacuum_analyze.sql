-- After a bulk load: statistics, plus the visibility map (so index-only scans skip the heap)
-- and hint bits (so the first reads of a benchmark do not rewrite every page).
VACUUM (ANALYZE) constitutional_validations
