-- Other sessions of this database holding pg_partman's run_maintenance lock: a session-level
-- advisory lock (key hashtext('pg_partman run_maintenance')) that a failed run keeps until its
-- session ends. pg_locks splits a bigint key into classid (high 32 bits) and objid (low 32).
SELECT l.pid, coalesce(a.application_name, ''), coalesce(a.state, '')
FROM pg_locks l
LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory'
  AND l.granted
  AND l.objsubid = 1
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND ((l.classid::bigint << 32) | l.objid::bigint) = hashtext('pg_partman run_maintenance')::bigint
  AND l.pid <> pg_backend_pid()
ORDER BY l.pid
