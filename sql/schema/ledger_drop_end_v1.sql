-- Event trigger function, sql_drop (migration 0010): every partition of
-- constitutional_validations that was dropped becomes a ledger entry of kind 'drop' with the
-- range, row count, ids and rows digest ledger_drop_start() read before the drop, or, for a
-- partition it was not asked to read (dropped before retention was due), with row_count and
-- rows_digest NULL: verification then accepts none of its rows as dropped. Nothing is recorded
-- when the parent itself goes (the store is being removed). Runs as whoever drops.
CREATE OR REPLACE FUNCTION ledger_drop_end() RETURNS event_trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $fn$
BEGIN
    IF to_regclass('ledger_drop_pending') IS NULL
       OR NOT has_table_privilege('ledger_drop_pending', 'INSERT') THEN
        RETURN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_event_trigger_dropped_objects() AS d
                    WHERE d.object_identity = current_schema() || '.constitutional_validations')
    THEN
        INSERT INTO ledger_entries
            (xid, kind, row_count, min_id, max_id, ids, rows_digest, partition, bounds)
        SELECT pg_current_xact_id(), 'drop', p.row_count, p.min_id, p.max_id,
               coalesce(p.ids, '{}'), p.rows_digest, p.partition, p.bounds
          FROM ledger_drop_pending AS p
         WHERE p.xid = pg_current_xact_id()
           AND p.partition_oid IN (SELECT d.objid FROM pg_event_trigger_dropped_objects() AS d
                                    WHERE d.classid = 'pg_class'::regclass
                                      AND d.objsubid = 0);
    END IF;
    DELETE FROM ledger_drop_pending AS p WHERE p.xid = pg_current_xact_id();
END
$fn$
