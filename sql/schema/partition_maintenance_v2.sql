-- acgs_partition_maintenance() since migration 0006: as v1 (move rows stranded in the default
-- partition, then pg_partman's maintenance), then acgs_partition_statistics() for the
-- partitions maintenance made.
CREATE OR REPLACE PROCEDURE acgs_partition_maintenance(
    p_parent regclass DEFAULT 'constitutional_validations'::regclass
)
LANGUAGE plpgsql
AS $proc$
DECLARE
    parent text;
    home text;
    default_table text;
    stranded boolean := false;
BEGIN
    SELECT n.nspname || '.' || c.relname, quote_ident(n.nspname) INTO STRICT parent, home
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = p_parent;
    SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) INTO default_table
      FROM pg_inherits i
      JOIN pg_class c ON c.oid = i.inhrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE i.inhparent = p_parent
       AND pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT';
    IF default_table IS NOT NULL THEN
        EXECUTE 'SELECT EXISTS (SELECT 1 FROM ONLY ' || default_table || ')'
           INTO stranded;
    END IF;
    IF stranded THEN
        -- One partition per batch, a COMMIT after each, no pause between them.
        CALL partman.partition_data_proc(parent, p_wait => 0, p_quiet => true);
    END IF;
    CALL partman.run_maintenance_proc();
    -- Partitions it just made get the planner statistics of migration 0006 (the function
    -- lives beside the table; no search_path is pinned here, see migration 0002).
    EXECUTE 'SELECT ' || home || '.acgs_partition_statistics($1)' USING p_parent;
END
$proc$
