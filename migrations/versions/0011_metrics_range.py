"""Exact metrics over any time range: tenant_metrics_range() and its tenant-login variant.

Revision ID: 0011_metrics_range
Revises: 0009_batch_digest
Create Date: 2026-12-01

``tenant_metrics_range(tenant, since, until)`` (sql/schema/tenant_metrics_range_v1.sql) gives the
seed's figures over ``[since, until)``: whole hour buckets from ``validation_rollup`` and the
pending ``validation_rollup_delta``, the partial edge hours from the raw rows. Plain SQL with an
SQL-standard body, so it is inlined into the caller's statement; the writer and reader roles may
run it. ``current_tenant_metrics_range(since, until)``
(sql/schema/current_tenant_metrics_range_v1.sql) is the same for the tenant bound to the session's
login (SECURITY DEFINER, pinned search_path); only the tenant role may run it. Nothing is PUBLIC's.

Lock levels: creating functions locks nothing that exists (their bodies only record dependencies
on the tables they read); granting EXECUTE on them locks nothing either.
"""

from __future__ import annotations

from alembic import op

from acgs_db.resources import load_sql
from acgs_db.settings import Settings

revision = "0011_metrics_range"
down_revision = "0009_batch_digest"
branch_labels = None
depends_on = None

# Statements here hold no "%": Alembic's offline (--sql) rendering would double it.

_RANGE = "tenant_metrics_range(varchar, timestamptz, timestamptz)"
_CURRENT = "current_tenant_metrics_range(timestamptz, timestamptz)"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def upgrade() -> None:
    s = Settings.from_env()
    w, r, t = _q(s.writer_role), _q(s.reader_role), _q(s.tenant_role)
    op.execute(load_sql("schema/tenant_metrics_range_v1"))
    op.execute(load_sql("schema/current_tenant_metrics_range_v1"))
    op.execute(f"REVOKE ALL ON FUNCTION {_RANGE}, {_CURRENT} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {_RANGE} TO {w}, {r}")
    op.execute(f"GRANT EXECUTE ON FUNCTION {_CURRENT} TO {t}")
    _own_store()


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {_CURRENT}")
    op.execute(f"DROP FUNCTION {_RANGE}")
    _own_store()


def _own_store() -> None:
    """What this migration made goes to the store's owner role (migration 0007)."""
    op.execute(f"SELECT acgs_own_store('{Settings.from_env().owner_role}')")
