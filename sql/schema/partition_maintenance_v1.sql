-- acgs_partition_maintenance() as migration 0002 made it: move rows stranded in the default
-- partition, then pg_partman's maintenance. See migrations/versions/0002_maintenance.py.
CREATE OR REPLACE PROCEDURE acgs_partition_maintenance(
    p_parent regclass DEFAULT 'constitutional_validations'::regclass
)
LANGUAGE plpgsql
AS $proc$
DECLARE
    parent text;
    default_table text;
    stranded boolean := false;
BEGIN
    SELECT n.nspname || '.' || c.relname INTO STRICT parent
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
END
$proc$
