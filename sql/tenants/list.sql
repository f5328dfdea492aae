-- Every binding, with whether the login still exists under its recorded name, may log in and
-- is a member of the tenant role (a binding without membership grants nothing).
SELECT b.login,
       b.tenant_id,
       b.bound_at,
       r.oid IS NOT NULL AND r.rolname = b.login AS present,
       coalesce(r.rolcanlogin, false) AS can_login,
       coalesce(pg_has_role(r.oid, %(tenant_role)s::name, 'MEMBER'), false) AS member
FROM {schema}.tenant_logins b
LEFT JOIN pg_roles r ON r.oid = b.login_oid
ORDER BY b.tenant_id, b.login
