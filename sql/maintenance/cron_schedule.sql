-- Create the job, or update the one of that name and user (pg_cron 1.4: same jobid).
SELECT cron.schedule_in_database(%(name)s, %(schedule)s, %(command)s, %(database)s)
