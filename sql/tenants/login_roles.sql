-- What binding a login to a tenant depends on: the role exists and may log in, and it is not a
-- role that row-level security lets see every tenant (a superuser, BYPASSRLS, or a member of
-- the owner, writer, reader or refresher role: their policies would widen the tenant's).
-- The role names are the store's settings (%(owner)s, ...), bound as parameters.
SELECT r.oid,
       r.rolcanlogin,
       r.rolsuper OR r.rolbypassrls AS bypasses_rls,
       ARRAY(SELECT g.rolname FROM pg_roles g
              WHERE g.rolname = ANY (ARRAY[%(owner)s, %(writer)s, %(reader)s, %(refresher)s]::name[])
                AND pg_has_role(r.oid, g.oid, 'MEMBER')
              ORDER BY g.rolname) AS wider_roles,
       (SELECT b.tenant_id FROM {schema}.tenant_logins b WHERE b.login_oid = r.oid) AS bound_to
FROM pg_roles r
WHERE r.rolname = %(login)s
