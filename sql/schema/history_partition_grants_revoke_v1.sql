-- Downgrade of migration 0013: the partitions of constitutional_validations carry no grants of
-- their own again (acgs_history_compile() had given SELECT to the roles whose policy shows them
-- every row); every privilege granted on a partition to a role other than its owner is revoked.
DO $do$
DECLARE
    grant_of record;
BEGIN
    FOR grant_of IN
        SELECT DISTINCT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS part,
               quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) AS grantee
          FROM pg_catalog.pg_inherits i
          JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
          CROSS JOIN LATERAL aclexplode(c.relacl) AS a
         WHERE i.inhparent = 'constitutional_validations'::regclass
           AND a.grantee <> c.relowner AND a.grantee <> 0
    LOOP
        EXECUTE 'REVOKE ALL ON ' || grant_of.part || ' FROM ' || grant_of.grantee;
    END LOOP;
END
$do$
