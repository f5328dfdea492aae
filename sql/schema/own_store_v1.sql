-- Hands every object of the audit store in the current schema (its tables, partitions,
-- views, materialized view, routines, and pg_partman's template table of the validations)
-- that the migrating role owns to p_owner, the NOLOGIN owner role of migration 0007, so that
-- SECURITY DEFINER functions run with no more than the store's own privileges. Objects of
-- extensions and Alembic's version table are left alone. Called by migration 0007 and by
-- every later migration after it creates objects. Runs as its caller (a superuser, or a
-- member of p_owner).
CREATE OR REPLACE FUNCTION acgs_own_store(p_owner regrole) RETURNS integer
LANGUAGE plpgsql
AS $fn$
DECLARE
    obj record;
    moved integer := 0;
BEGIN
    FOR obj IN
        SELECT CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                              ELSE 'TABLE' END AS kind,
               quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS name
          FROM pg_catalog.pg_class c
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE (n.nspname = current_schema()
                OR c.oid = (SELECT to_regclass(pc.template_table) FROM partman.part_config pc
                             WHERE pc.parent_table = current_schema()
                                                     || '.constitutional_validations'))
           AND c.relkind IN ('r', 'p', 'v', 'm')
           AND c.relname <> 'alembic_version'
           AND c.relowner = (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = current_user)
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                            WHERE d.classid = 'pg_catalog.pg_class'::regclass
                              AND d.objid = c.oid AND d.deptype = 'e')
        UNION ALL
        SELECT CASE p.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END,
               p.oid::regprocedure::text
          FROM pg_catalog.pg_proc p
          JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = current_schema()
           AND p.proowner = (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = current_user)
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                            WHERE d.classid = 'pg_catalog.pg_proc'::regclass
                              AND d.objid = p.oid AND d.deptype = 'e')
        UNION ALL
        SELECT 'STATISTICS', quote_ident(n.nspname) || '.' || quote_ident(s.stxname)
          FROM pg_catalog.pg_statistic_ext s
          JOIN pg_catalog.pg_namespace n ON n.oid = s.stxnamespace
         WHERE n.nspname = current_schema()
           AND s.stxowner = (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = current_user)
    LOOP
        EXECUTE 'ALTER ' || obj.kind || ' ' || obj.name || ' OWNER TO ' || p_owner::text;
        moved := moved + 1;
    END LOOP;
    RETURN moved;
END
$fn$
