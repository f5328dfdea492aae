-- Delete cached results older than $1; returns how many went.
WITH gone AS (
    DELETE FROM decision_validation_cache
    WHERE now() - created_at >= $1::interval
    RETURNING 1
)
SELECT count(*) FROM gone
