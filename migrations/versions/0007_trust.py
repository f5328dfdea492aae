"""Trust: a NOLOGIN owner, tenant identity from the login, exclusivity nobody else can take.

Revision ID: 0007_trust
Revises: 0006_statistics
Create Date: 2026-12-01

* **Owner.** A NOLOGIN, non-superuser role (ACGS_OWNER_ROLE, default ``acgs_owner``) owns every
  object of the store (``acgs_own_store()``; later migrations call it again), so SECURITY
  DEFINER functions run with the store's privileges only, not with those of whoever migrated
  (in practice a superuser). The migrating role must be a superuser or a member of it. New
  partitions get it from ``acgs_partition_statistics()``, which maintenance calls.
* **Tenant identity from the login.** ``tenant_logins`` (owner-only: no grants) binds a login
  role, by OID, to exactly one tenant (``acgs-db tenant-login grant ROLE TENANT``).
  ``acgs_session_tenant()`` returns the tenant bound to ``session_user``; the tenant policies
  of ``constitutional_validations`` and ``decision_validation_cache`` compare ``tenant_id``
  with it, for reads and writes, and both tables FORCE ROW LEVEL SECURITY (the owner has a
  policy of its own: SECURITY DEFINER functions read across tenants and filter themselves).
  The setting ``acgs.tenant_id``, which any session may set, is no longer read.
* **Exclusivity.** One refresh and one fold at a time rest on rows of the owner-only table
  ``acgs_exclusive`` locked inside the definer functions (``FOR UPDATE [SKIP LOCKED]``), not on
  advisory-lock keys, which any login can hold to stall the fold or make refreshes skip.
* **Search paths.** Every SECURITY DEFINER function pins its search_path (the schema, then
  pg_temp); ``tenant_metrics_24h()``, which the materialized view calls, gets an SQL-standard
  body whose names are bound when it is created, so PostgreSQL 17's restricted search_path
  during REFRESH MATERIALIZED VIEW cannot break it. No routine of the store is executable by
  PUBLIC, and PUBLIC may not create objects in the schema.

Lock levels: ALTER ... OWNER TO, FORCE ROW LEVEL SECURITY and the policies take ACCESS
EXCLUSIVE on every table of the store, partitions included, and the view, for milliseconds
(nothing is rewritten); every statement runs under lock_timeout (migrations/env.py).
"""

from __future__ import annotations

from alembic import op

from acgs_db.resources import load_sql
from acgs_db.settings import Settings

revision = "0007_trust"
down_revision = "0006_statistics"
branch_labels = None
depends_on = None

# Statements here hold no "%": Alembic's offline (--sql) rendering would double it. Role names
# come from Settings, which admits only plain lower-case identifiers; they are quoted anyway.

_TABLES = ("constitutional_validations", "decision_validation_cache")
_ROUTINES = (
    "acgs_session_tenant()",
    "acgs_own_store(regrole)",
    "acgs_partition_statistics(regclass)",
    "refresh_tenant_metrics_24h()",
    "fold_validation_rollup()",
    "rollup_fold_lag()",
    "tenant_metrics_24h(varchar)",
    "current_tenant_metrics_24h()",
    "validation_rollup_capture()",
    "rollup_width()",
    "rollup_bucket(timestamptz)",
)


def _q(name: str) -> str:
    return f'"{name}"'


def upgrade() -> None:
    s = Settings.from_env()
    owner, schema = _q(s.owner_role), _q(s.schema)
    w, r, f, t = (_q(x) for x in (s.writer_role, s.reader_role, s.refresher_role, s.tenant_role))

    op.execute(
        f"""
        DO $role$
        BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{s.owner_role}') THEN
                CREATE ROLE {owner} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
            ELSIF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{s.owner_role}'
                          AND (rolsuper OR rolcanlogin OR rolbypassrls OR rolcreaterole)) THEN
                RAISE EXCEPTION 'the owner role {s.owner_role} must be NOLOGIN, NOSUPERUSER,'
                    ' NOCREATEROLE and NOBYPASSRLS'
                    USING HINT = 'ACGS_OWNER_ROLE names it; ALTER ROLE it, or choose another name.';
            END IF;
        END
        $role$
        """
    )
    op.execute(f"GRANT USAGE, CREATE ON SCHEMA {schema} TO {owner}")
    # PUBLIC may not create objects here (PostgreSQL 15's default for the public schema of a new
    # database, made explicit): nothing can shadow the store's names in a caller's search_path.
    op.execute(f"REVOKE CREATE ON SCHEMA {schema} FROM PUBLIC")
    # The fold reads pg_partman's partition list.
    op.execute(f"GRANT USAGE ON SCHEMA partman TO {owner}")
    op.execute(f"GRANT SELECT ON partman.part_config TO {owner}")

    op.execute(
        """
        CREATE TABLE tenant_logins (
            login_oid oid PRIMARY KEY,
            login text NOT NULL,
            tenant_id varchar(50) NOT NULL
                CONSTRAINT tenant_logins_tenant_id_check CHECK (tenant_id <> ''),
            bound_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX tenant_logins_tenant ON tenant_logins (tenant_id)")
    op.execute(
        """
        CREATE TABLE acgs_exclusive (
            name text PRIMARY KEY CONSTRAINT acgs_exclusive_name_check
                CHECK (name IN ('refresh', 'fold'))
        )
        """
    )
    op.execute("INSERT INTO acgs_exclusive (name) VALUES ('refresh'), ('fold')")

    op.execute(load_sql("schema/session_tenant_v1"))
    op.execute(load_sql("schema/own_store_v1"))
    op.execute(load_sql("schema/partition_statistics_v2"))
    op.execute(load_sql("schema/refresh_function_v3"))
    op.execute(load_sql("schema/rollup_fold_v2"))
    op.execute(load_sql("schema/tenant_metrics_24h_v2"))

    for table in _TABLES:
        op.execute(f"DROP POLICY tenant_isolation ON {table}")
        # A scalar subquery: an InitPlan evaluated once per statement. A bare call is folded
        # into a one-time filter of every partition's scan and called once per partition
        # (measured: 10 calls, about 0.1 ms, per history look-up on 10 partitions).
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table} TO {t}"
            " USING (tenant_id = (SELECT acgs_session_tenant()))"
            " WITH CHECK (tenant_id = (SELECT acgs_session_tenant()))"
        )
        op.execute(
            f"CREATE POLICY store_owner ON {table} TO {owner} USING (true) WITH CHECK (true)"
        )
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")

    op.execute(
        """
        CREATE OR REPLACE VIEW tenant_metrics_24h_current WITH (security_barrier) AS
        SELECT * FROM tenant_constitutional_metrics_24h
        WHERE tenant_id = (SELECT acgs_session_tenant())
        """
    )
    op.execute(load_sql("schema/current_tenant_metrics_v2"))

    # No routine of the store is PUBLIC's; each role gets what it needs (migration 0005), and
    # the tenant policies need acgs_session_tenant() for whoever they apply to.
    for routine in _ROUTINES:
        op.execute(f"REVOKE ALL ON ROUTINE {routine} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION acgs_session_tenant() TO {t}, {w}, {r}")
    op.execute(f"GRANT EXECUTE ON FUNCTION rollup_width(), rollup_bucket(timestamptz) TO {w}, {r}")
    op.execute(f"GRANT EXECUTE ON FUNCTION rollup_fold_lag() TO {f}, {w}, {r}")

    op.execute(f"SELECT acgs_own_store('{s.owner_role}')")
    op.execute(f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} REVOKE EXECUTE ON ROUTINES FROM PUBLIC")


def downgrade() -> None:
    s = Settings.from_env()
    owner, schema = _q(s.owner_role), _q(s.schema)
    w, r, t = _q(s.writer_role), _q(s.reader_role), _q(s.tenant_role)
    # Ownership goes back to the role that downgrades (the one that migrated, in practice).
    op.execute(
        f"""
        DO $own$
        DECLARE
            obj record;
        BEGIN
            FOR obj IN
                SELECT CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                                      ELSE 'TABLE' END AS kind,
                       c.oid::regclass::text AS name
                  FROM pg_class c
                 WHERE c.relowner = '{s.owner_role}'::regrole AND c.relkind IN ('r', 'p', 'v', 'm')
                UNION ALL
                SELECT CASE p.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END,
                       p.oid::regprocedure::text
                  FROM pg_proc p WHERE p.proowner = '{s.owner_role}'::regrole
                UNION ALL
                SELECT 'STATISTICS', quote_ident(n.nspname) || '.' || quote_ident(x.stxname)
                  FROM pg_statistic_ext x JOIN pg_namespace n ON n.oid = x.stxnamespace
                 WHERE x.stxowner = '{s.owner_role}'::regrole
            LOOP
                EXECUTE 'ALTER ' || obj.kind || ' ' || obj.name || ' OWNER TO '
                     || quote_ident(current_user);
            END LOOP;
        END
        $own$
        """
    )
    op.execute(f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} GRANT EXECUTE ON ROUTINES TO PUBLIC")
    op.execute(load_sql("schema/current_tenant_metrics_v1"))
    op.execute(
        """
        CREATE OR REPLACE VIEW tenant_metrics_24h_current WITH (security_barrier) AS
        SELECT * FROM tenant_constitutional_metrics_24h
        WHERE tenant_id = current_setting('acgs.tenant_id', true)
        """
    )
    for table in _TABLES:
        op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        op.execute(f"DROP POLICY store_owner ON {table}")
        op.execute(f"DROP POLICY tenant_isolation ON {table}")
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table} TO {t}"
            " USING (tenant_id = current_setting('acgs.tenant_id', true))"
            " WITH CHECK (tenant_id = current_setting('acgs.tenant_id', true))"
        )
    op.execute(load_sql("schema/tenant_metrics_24h_v1"))
    op.execute(load_sql("schema/rollup_fold_v1"))
    op.execute(load_sql("schema/refresh_function_v2"))
    op.execute(load_sql("schema/partition_statistics_v1"))
    op.execute("REVOKE ALL ON FUNCTION tenant_metrics_24h(varchar) FROM PUBLIC")
    op.execute(f"REVOKE ALL ON FUNCTION rollup_width(), rollup_bucket(timestamptz) FROM {w}, {r}")
    op.execute("GRANT EXECUTE ON FUNCTION rollup_width(), rollup_bucket(timestamptz) TO PUBLIC")
    op.execute("DROP FUNCTION acgs_own_store(regrole)")
    op.execute("DROP FUNCTION acgs_session_tenant()")
    op.execute("DROP TABLE acgs_exclusive")
    op.execute("DROP TABLE tenant_logins")
    op.execute(f"REVOKE ALL ON partman.part_config FROM {owner}")
    op.execute(f"REVOKE ALL ON SCHEMA partman FROM {owner}")
    op.execute(f"REVOKE ALL ON SCHEMA {schema} FROM {owner}")
    op.execute(
        f"""
        DO $role$
        BEGIN
            DROP ROLE {owner};
        EXCEPTION WHEN dependent_objects_still_exist THEN
            RAISE NOTICE 'role {s.owner_role} still owns objects elsewhere; it stays';
        END
        $role$
        """
    )
