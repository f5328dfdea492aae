"""The metrics read the chosen bins' values of the window only, not of the whole retention.

Revision ID: 0018_window_values
Revises: 0017_short_edge
Create Date: 2026-12-07

``tenant_metrics_24h()`` v5 read the values of the bins holding the percentile ranks by
``validation_rollup_value`` (tenant, value, bucket): one value range of that index holds every
bucket the rollup keeps, so the look-up walked those values over the whole retention to keep the
window's: its cost grew with every day of history until retention stopped it (long-tail tenants
with 50,000 rows in the window, same run: p50 2.8 ms with one day of rows, 4.2 ms with 31 days;
v6 3.2-3.3 ms for both). v6
(sql/schema/tenant_metrics_24h_v6.sql) reads them by the rollup's key, one short range per hour
of the window and chosen bin, and checks that each chosen bin's values add up to the bin's count
(else the per-value pass, as for incomplete bins).

``tenant_metrics_range()`` had the same flaw in its value steps; v4
(sql/schema/tenant_metrics_range_v4.sql) reads the edge hours' values hour by hour, and the chosen
bins' values hour by hour when the bins' rows over the retention outnumber 20 per hour and bin,
else by value as before.

The session-planned wrappers gain ``SET jit = off`` (sql/schema/metrics_planned_v2.sql): with
few tenants a generic plan's estimates pass ``jit_above_cost`` and every call compiled the plan
first (v6 in a 5-tenant database: 156 ms a call instead of 3.3 ms).

Lock levels: none (replaces functions; the view keeps calling the same functions).
"""

from __future__ import annotations

from alembic import op

from acgs_db.resources import load_sql
from acgs_db.settings import Settings

revision = "0018_window_values"
down_revision = "0017_short_edge"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(load_sql("schema/tenant_metrics_24h_v6"))
    op.execute(load_sql("schema/tenant_metrics_range_v4"))
    op.execute(load_sql("schema/metrics_planned_v2"))
    _own_store()


def downgrade() -> None:
    op.execute(load_sql("schema/tenant_metrics_24h_v5"))
    op.execute(load_sql("schema/tenant_metrics_range_v3"))
    op.execute(load_sql("schema/metrics_planned_v1"))
    _own_store()


def _own_store() -> None:
    """What this migration replaced stays with the store's owner role (migration 0007)."""
    op.execute(f"SELECT acgs_own_store('{Settings.from_env().owner_role}')")
