-- Purge of the batch ledger (migration 0012): deletes up to max_rows rows of ingest_batches
-- committed before now() - retention, oldest first, and returns how many. A row is the only
-- memory that its batch committed, so a retry of that batch after the purge would write it
-- again: retention must outlast any retry (at least an hour; acgs_db.settings holds the
-- default). Kept whatever their age: the rows of multi-connection batches with a part still
-- prepared (pg_prepared_xacts, gid acgs_db:<token>:<part>): part 0's committed row is the
-- commit decision `acgs-db recover` reads for the others. Rows locked by another transaction
-- are skipped (a concurrent purge, or a retry's claim waiting on them), not waited for.
-- The ledger of validations (ledger_entries) is not touched: ingest_batches holds retry state,
-- not audit data. SECURITY DEFINER: callers need no DELETE on the table. (No percent sign in this
-- file: Alembic's offline rendering would double it.)
CREATE OR REPLACE FUNCTION ingest_batches_purge(retention interval, max_rows integer)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path FROM CURRENT
AS $fn$
DECLARE
    purged bigint;
BEGIN
    IF retention IS NULL OR retention < interval '1 hour' THEN
        RAISE EXCEPTION USING
            MESSAGE = 'ingest_batches_purge: retention must be at least 1 hour, got '
                      || coalesce(retention::text, 'NULL'),
            ERRCODE = 'invalid_parameter_value';
    END IF;
    IF max_rows IS NULL OR max_rows < 1 THEN
        RAISE EXCEPTION USING
            MESSAGE = 'ingest_batches_purge: max_rows must be at least 1, got '
                      || coalesce(max_rows::text, 'NULL'),
            ERRCODE = 'invalid_parameter_value';
    END IF;
    WITH prepared AS MATERIALIZED (
        SELECT DISTINCT split_part(p.gid, ':', 2) AS token
        FROM pg_prepared_xacts AS p
        WHERE left(p.gid, 8) = 'acgs_db:' AND p.database = current_database()
    ), doomed AS (
        SELECT b.batch_id
        FROM ingest_batches AS b
        WHERE b.committed_at < now() - retention
          AND (b.token IS NULL
               OR NOT EXISTS (SELECT 1 FROM prepared AS p WHERE p.token = b.token::text))
        ORDER BY b.committed_at
        LIMIT max_rows
        FOR UPDATE OF b SKIP LOCKED
    )
    DELETE FROM ingest_batches AS b
    USING doomed AS d
    WHERE b.batch_id = d.batch_id;
    GET DIAGNOSTICS purged = ROW_COUNT;
    RETURN purged;
END
$fn$
