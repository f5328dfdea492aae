-- Gives every partition of p_parent what its parent cannot pass on: a functional-dependency
-- statistics object on (tenant_id, decision_id) (see partition_statistics_v1.sql: without it
-- the history look-up reads and sorts every row of a decision), and, since migration 0007, the
-- parent's owner (the NOLOGIN owner role): pg_partman makes new partitions as whoever runs the
-- maintenance. Returns how many partitions it changed. Runs as its caller (the maintenance's
-- role, which must own the partitions or be a superuser); partitions carry no grants of their
-- own, so nobody reaches them but through the parent and its row-level security.
CREATE OR REPLACE FUNCTION acgs_partition_statistics(
    p_parent regclass DEFAULT 'constitutional_validations'::regclass
) RETURNS integer
LANGUAGE plpgsql
AS $fn$
DECLARE
    part record;
    owner_name name;
    made integer := 0;
BEGIN
    SELECT pg_catalog.pg_get_userbyid(c.relowner) INTO STRICT owner_name
      FROM pg_catalog.pg_class c WHERE c.oid = p_parent;
    FOR part IN
        SELECT n.nspname, c.relname, c.relowner <> p.relowner AS foreign_owner,
               NOT EXISTS (SELECT 1 FROM pg_catalog.pg_statistic_ext s
                            WHERE s.stxrelid = c.oid AND 'f' = ANY (s.stxkind)) AS no_statistics
          FROM pg_catalog.pg_inherits i
          JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
          JOIN pg_catalog.pg_class p ON p.oid = i.inhparent
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE i.inhparent = p_parent
         ORDER BY c.relname
    LOOP
        IF part.foreign_owner THEN
            EXECUTE 'ALTER TABLE ' || quote_ident(part.nspname) || '.' || quote_ident(part.relname)
                 || ' OWNER TO ' || quote_ident(owner_name);
        END IF;
        IF part.no_statistics THEN
            EXECUTE 'CREATE STATISTICS '
                 || quote_ident(part.nspname) || '.'
                 || quote_ident(left(part.relname, 55) || '_tenant_dep')
                 || ' (dependencies) ON tenant_id, decision_id FROM '
                 || quote_ident(part.nspname) || '.' || quote_ident(part.relname);
            EXECUTE 'ALTER STATISTICS ' || quote_ident(part.nspname) || '.'
                 || quote_ident(left(part.relname, 55) || '_tenant_dep')
                 || ' OWNER TO ' || quote_ident(owner_name);
        END IF;
        IF part.foreign_owner OR part.no_statistics THEN
            made := made + 1;
        END IF;
    END LOOP;
    RETURN made;
END
$fn$
