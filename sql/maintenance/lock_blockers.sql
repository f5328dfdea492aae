-- Other sessions holding granted locks on the relations of schema %(schema)s (its tables, their
-- partitions and indexes): the sessions a statement that timed out waiting for a lock queued
-- behind. Oldest transaction first; one row per session and relation.
SELECT l.pid,
       coalesce(a.application_name, '') AS application_name,
       coalesce(a.state, '') AS state,
       extract(epoch FROM clock_timestamp() - a.xact_start)::float8 AS xact_age_s,
       l.mode,
       n.nspname || '.' || c.relname AS relation
FROM pg_locks l
JOIN pg_class c ON c.oid = l.relation
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'relation'
  AND l.granted
  AND l.pid <> pg_backend_pid()
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND n.nspname = %(schema)s
  AND c.relkind IN ('r', 'p', 'm', 'v')
ORDER BY a.xact_start NULLS LAST, l.pid, c.relname
