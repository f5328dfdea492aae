-- The whole scratch database (the validations and the rollup's delta queue): statistics, the
-- visibility map and hint bits, as autovacuum would leave them after a backfill.
VACUUM ANALYZE
