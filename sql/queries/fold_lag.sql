-- Age in seconds of the oldest write not yet folded into validation_rollup (0 when none).
SELECT coalesce(extract(epoch FROM now() - min(logged_at)), 0)::float8
FROM validation_rollup_delta
