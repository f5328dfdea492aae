-- Rollup rows of the 24-hour window (and the hour before it).
SELECT count(*) FROM validation_rollup WHERE bucket >= now() - interval '25 hours'
