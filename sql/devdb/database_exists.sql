-- Whether the development database exists.
SELECT 1 FROM pg_database WHERE datname = %(database)s
