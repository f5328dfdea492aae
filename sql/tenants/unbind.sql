-- Forget the login's binding; returns the tenant it was bound to.
DELETE FROM {schema}.tenant_logins b
USING pg_roles r
WHERE r.rolname = %(login)s AND b.login_oid = r.oid
RETURNING b.tenant_id
