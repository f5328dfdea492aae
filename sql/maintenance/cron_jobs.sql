-- pg_cron jobs by name (cron.job shows a non-superuser only the jobs it owns).
SELECT jobid, jobname, schedule, command, database, active
FROM cron.job
WHERE jobname = ANY(%(names)s)
ORDER BY jobid
