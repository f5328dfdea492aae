-- Stops a migration, naming the Debian package to install, when the extension named by the
-- transaction-local setting acgs.required_extension is missing. (No percent sign inside:
-- Alembic's offline rendering would double it.)
DO $check$
DECLARE
    extension text := current_setting('acgs.required_extension');
    package text := 'postgresql-' || (current_setting('server_version_num')::int / 10000) || '-'
                    || CASE extension WHEN 'pg_partman' THEN 'partman'
                                      WHEN 'pg_cron' THEN 'cron'
                                      ELSE extension END;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = extension) THEN
        RAISE EXCEPTION USING
            MESSAGE = 'the PostgreSQL extension ' || extension
                      || ' is not installed on this server',
            HINT = 'Install the Debian package ' || package || ' (apt-get install '
                         || package || ') and run the migration again.';
    END IF;
END
$check$
