-- The tenant bound to this session's login (migration 0007), or NULL when the login is bound
-- to none. Row-level security of tenant logins compares tenant_id with it, so a tenant login
-- sees and writes its own tenant's rows whatever it runs: SET, set_config, SET ROLE and RESET
-- change neither session_user nor the owner-only binding table.
--
-- session_user, not current_user: a tenant login may SET ROLE to the tenant group role (it is
-- a member), which changes current_user but not the authenticated login; only a superuser can
-- change session_user (SET SESSION AUTHORIZATION). The binding is keyed by the login's OID, so
-- a role dropped and created again under the same name is bound to nothing until bound anew.
--
-- SECURITY DEFINER (tenant logins may not read tenant_logins) with a pinned search_path;
-- plpgsql so that the look-up's plan is cached for the session (a definer function is never
-- inlined); STABLE, so a policy evaluates it once per scan, and an index condition can use it.
CREATE OR REPLACE FUNCTION acgs_session_tenant() RETURNS varchar
LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL SAFE
SET search_path FROM CURRENT
AS $fn$
BEGIN
    RETURN (SELECT b.tenant_id
              FROM tenant_logins b
             WHERE b.login_oid = (SELECT r.oid FROM pg_catalog.pg_roles r
                                   WHERE r.rolname = pg_catalog.session_user()));
END
$fn$
