-- Record that the login (by OID, so that a role dropped and created again is bound to nothing)
-- is bound to the tenant.
INSERT INTO {schema}.tenant_logins (login_oid, login, tenant_id)
VALUES (%(oid)s, %(login)s, %(tenant)s)
ON CONFLICT (login_oid) DO NOTHING
