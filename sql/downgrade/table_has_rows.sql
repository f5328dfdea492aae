-- Whether a table (name quoted by psycopg.sql.Identifier, taken from a migration file) holds
-- any row; stops at the first one.
SELECT EXISTS (SELECT 1 FROM {table})
