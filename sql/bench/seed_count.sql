-- The full recompute: the seed's 24-hour SQL (schema/seed_metrics_24h) on the raw rows.
SELECT count(*) FROM ({seed}) AS seed
