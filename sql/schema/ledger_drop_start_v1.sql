-- Event trigger function, ddl_command_start of DROP TABLE (migration 0010): before a DROP TABLE
-- runs, notes every partition of constitutional_validations in ledger_drop_pending (this
-- transaction's), and, for each partition that retention may drop (its upper bound older than
-- pg_partman's retention), locks it against writers (SHARE) and records its row count, ids and
-- rows digest (SHA-256 of its rows' digests in id order), read while it still exists.
-- ledger_drop_end() turns the notes of partitions actually dropped into ledger entries.
-- Runs as whoever drops (not SECURITY DEFINER): only a role that may write the ledger's
-- tables (a superuser, the owner) is ever able to drop a partition; anyone else returns at once.
CREATE OR REPLACE FUNCTION ledger_drop_start() RETURNS event_trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $fn$
DECLARE
    parent regclass := to_regclass('constitutional_validations');
    keep interval;
    part record;
    reading boolean;
BEGIN
    IF parent IS NULL OR to_regclass('ledger_drop_pending') IS NULL
       OR NOT has_table_privilege('ledger_drop_pending', 'INSERT') THEN
        RETURN;
    END IF;
    -- Notes left by a committed transaction that dropped nothing (DROP TABLE IF EXISTS).
    DELETE FROM ledger_drop_pending AS p WHERE p.xid <> pg_current_xact_id();
    -- A DROP TABLE does not say here which tables it drops, and DROP TABLE runs often (REFRESH
    -- ... CONCURRENTLY drops its temporary tables), so partitions are read only when the drop
    -- is retention's (pg_partman's drop_partition_time() holds its advisory lock) or when the
    -- client's statement itself is a DROP TABLE (psql); other drops of a partition are
    -- recorded without a count.
    reading := EXISTS (
        SELECT 1 FROM pg_locks AS l
         WHERE l.locktype = 'advisory' AND l.pid = pg_backend_pid() AND l.granted
           AND l.objsubid = 1
           AND ((l.classid::bigint << 32) | l.objid::bigint)
               = hashtext('pg_partman drop_partition_time')::bigint)
        OR current_query() ~* '^\s*drop\s+table\s';
    SELECT c.retention::interval INTO keep FROM partman.part_config AS c
     WHERE c.parent_table = current_schema() || '.constitutional_validations';
    FOR part IN
        SELECT c.oid, n.nspname || '.' || c.relname AS name,
               pg_get_expr(c.relpartbound, c.oid) AS bounds,
               substring(pg_get_expr(c.relpartbound, c.oid) FROM 'TO \(''([^'']+)''\)')
                   ::timestamptz AS upper_bound
          FROM pg_inherits AS i
          JOIN pg_class AS c ON c.oid = i.inhrelid
          JOIN pg_namespace AS n ON n.oid = c.relnamespace
         WHERE i.inhparent = parent
    LOOP
        IF reading AND keep IS NOT NULL AND part.upper_bound <= now() - keep
           AND has_table_privilege(part.oid, 'SELECT') THEN
            EXECUTE 'LOCK TABLE ' || part.oid::regclass::text || ' IN SHARE MODE';
            EXECUTE 'INSERT INTO ledger_drop_pending'
                 || ' (partition_oid, partition, bounds, row_count, min_id, max_id, ids,'
                 || ' rows_digest)'
                 || ' SELECT $1, $2, $3, count(*), min(r.id), max(r.id),'
                 || ' coalesce(range_agg(int8range(r.id, r.id, ''[]'')), ''{}''),'
                 || ' sha256(coalesce(string_agg(ledger_row_digest(r.id, r.tenant_id,'
                 || ' r.decision_id, r.constitutional_hash, r.score, r.details,'
                 || ' r.processing_time_ms, r.created_at),'
                 || ' ''''::bytea ORDER BY r.id), ''''::bytea))'
                 || ' FROM (SELECT p.id, p.tenant_id, p.decision_id, p.constitutional_hash,'
                 || ' p.compliance_score::text AS score, p.validation_details::text AS details,'
                 || ' p.processing_time_ms, p.created_at'
                 || ' FROM ' || part.oid::regclass::text || ' AS p OFFSET 0) AS r'
                USING part.oid, part.name, part.bounds;
        ELSE
            INSERT INTO ledger_drop_pending (partition_oid, partition, bounds)
            VALUES (part.oid, part.name, part.bounds);
        END IF;
    END LOOP;
END
$fn$
