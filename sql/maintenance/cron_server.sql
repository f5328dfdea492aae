-- Where pg_cron lives on this server: this connection's database and cron.database_name
-- (NULL when pg_cron is not in shared_preload_libraries).
SELECT current_database(), current_setting('cron.database_name', true)
