-- The revision the database is at (run once alembic_version is known to exist).
SELECT version_num FROM alembic_version
