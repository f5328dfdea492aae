-- Whether pg_cron's extension exists in this database.
SELECT to_regclass('cron.job') IS NOT NULL
