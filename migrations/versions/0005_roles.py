"""Least-privilege roles and tenant isolation by row-level security.

Revision ID: 0005_roles
Revises: 0004_batches
Create Date: 2026-11-26

Four NOLOGIN group roles (names from ACGS_WRITER_ROLE, ACGS_READER_ROLE, ACGS_REFRESHER_ROLE,
ACGS_TENANT_ROLE; login roles are granted membership by the operator). The role that runs the
migrations owns every object.

* writer: inserts and reads validations, uses the decision cache and the batch ledger.
* reader: reads only.
* refresher: may only run refresh_tenant_metrics_24h() and fold_validation_rollup(), both
  SECURITY DEFINER with a pinned search_path.
* tenant: a tenant-scoped service. Row-level security shows it only the rows whose tenant_id
  equals the transaction-local setting acgs.tenant_id (which the repository sets from the
  call's tenant with set_config(..., true)), for reads and writes alike. Materialized views
  cannot carry row-level security, so it reads metrics through tenant_metrics_24h_current (a
  security-barrier view) and current_tenant_metrics_24h() (a SECURITY DEFINER function), both
  filtered by the same setting, and gets no privilege on the rollup tables or partitions.

The setting is a guard against a wrong or missing tenant (a bug, an injected query), not
against a tenant-scoped session that sets acgs.tenant_id to another tenant itself: that needs
one login role per tenant, which this schema leaves to the deployment.

Lock levels: ALTER TABLE ... ENABLE ROW LEVEL SECURITY and CREATE POLICY take ACCESS EXCLUSIVE
on constitutional_validations and decision_validation_cache, for as long as the migration's
transaction lasts (a few milliseconds: nothing is rewritten). GRANT takes no table lock. Roles
are created only when missing, since roles are shared by every database of the cluster;
for the same reason the downgrade drops a role only when nothing else depends on it.
"""

from __future__ import annotations

from alembic import op

from acgs_db.resources import load_sql
from acgs_db.settings import Settings

revision = "0005_roles"
down_revision = "0004_batches"
branch_labels = None
depends_on = None

# Statements here hold no "%": Alembic's offline (--sql) rendering would double it. Role names
# come from Settings, which admits only plain lower-case identifiers; they are quoted anyway.

_TENANT = "current_setting('acgs.tenant_id', true)"


def _roles() -> dict[str, str]:
    s = Settings.from_env()
    return {
        "writer": f'"{s.writer_role}"',
        "reader": f'"{s.reader_role}"',
        "refresher": f'"{s.refresher_role}"',
        "tenant": f'"{s.tenant_role}"',
    }


def upgrade() -> None:
    roles = _roles()
    for role in roles.values():
        name = role.strip('"')
        op.execute(
            f"""
            DO $role$
            BEGIN
                IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{name}') THEN
                    CREATE ROLE {role} NOLOGIN;
                END IF;
            END
            $role$
            """
        )
        op.execute(f"GRANT USAGE ON SCHEMA {_schema()} TO {role}")

    w, r, f, t = roles["writer"], roles["reader"], roles["refresher"], roles["tenant"]
    op.execute(f"GRANT SELECT, INSERT ON constitutional_validations TO {w}, {t}")
    op.execute(f"GRANT SELECT ON constitutional_validations TO {r}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON decision_validation_cache TO {w}, {t}")
    op.execute(f"GRANT SELECT ON decision_validation_cache TO {r}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE ON ingest_batches TO {w}")
    op.execute(f"GRANT SELECT ON ingest_batches TO {r}")
    op.execute(
        "GRANT SELECT ON tenant_constitutional_metrics_24h, validation_rollup,"
        f" validation_rollup_delta TO {w}, {r}"
    )
    op.execute(f"GRANT EXECUTE ON FUNCTION tenant_metrics_24h(varchar) TO {w}, {r}")
    op.execute(
        "GRANT EXECUTE ON FUNCTION refresh_tenant_metrics_24h(), fold_validation_rollup()"
        f" TO {f}, {w}"
    )
    op.execute(f"GRANT EXECUTE ON FUNCTION rollup_fold_lag() TO {f}, {w}, {r}")
    op.execute("REVOKE ALL ON FUNCTION tenant_metrics_24h(varchar) FROM PUBLIC")

    # Row-level security: service roles see everything, tenant-scoped ones their tenant only.
    for table in ("constitutional_validations", "decision_validation_cache"):
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY service_roles ON {table} TO {w}, {r} USING (true) WITH CHECK (true)"
        )
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table} TO {t}"
            f" USING (tenant_id = {_TENANT}) WITH CHECK (tenant_id = {_TENANT})"
        )

    op.execute(
        """
        CREATE VIEW tenant_metrics_24h_current WITH (security_barrier) AS
        SELECT * FROM tenant_constitutional_metrics_24h
        WHERE tenant_id = current_setting('acgs.tenant_id', true)
        """
    )
    op.execute(load_sql("schema/current_tenant_metrics_v1"))
    op.execute("REVOKE ALL ON FUNCTION current_tenant_metrics_24h() FROM PUBLIC")
    op.execute(f"GRANT SELECT ON tenant_metrics_24h_current TO {t}, {w}, {r}")
    op.execute(f"GRANT EXECUTE ON FUNCTION current_tenant_metrics_24h() TO {t}, {w}, {r}")


def _schema() -> str:
    return f'"{Settings.from_env().schema}"'


def downgrade() -> None:
    roles = _roles()
    op.execute("DROP FUNCTION current_tenant_metrics_24h()")
    op.execute("DROP VIEW tenant_metrics_24h_current")
    for table in ("constitutional_validations", "decision_validation_cache"):
        op.execute(f"DROP POLICY tenant_isolation ON {table}")
        op.execute(f"DROP POLICY service_roles ON {table}")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    op.execute("GRANT EXECUTE ON FUNCTION tenant_metrics_24h(varchar) TO PUBLIC")
    for role in roles.values():
        name = role.strip('"')
        # Privileges here go; the role itself only when no other database still uses it.
        op.execute(
            f"""
            DO $role$
            BEGIN
                IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{name}') THEN
                    EXECUTE 'REVOKE ALL ON ALL TABLES IN SCHEMA {_schema()} FROM {role}';
                    EXECUTE 'REVOKE ALL ON ALL FUNCTIONS IN SCHEMA {_schema()} FROM {role}';
                    EXECUTE 'REVOKE ALL ON ALL PROCEDURES IN SCHEMA {_schema()} FROM {role}';
                    EXECUTE 'REVOKE ALL ON SCHEMA {_schema()} FROM {role}';
                    BEGIN
                        EXECUTE 'DROP ROLE {role}';
                    EXCEPTION WHEN dependent_objects_still_exist THEN
                        RAISE NOTICE 'role {name} is still used elsewhere; it stays';
                    END;
                END IF;
            END
            $role$
            """
        )
