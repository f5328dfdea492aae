"""The 24-hour figures read at most 30 minutes of raw rows at the window's edge, not an hour.

Revision ID: 0017_short_edge
Revises: 0016_day_coarse_bins
Create Date: 2026-12-07

``tenant_metrics_24h()`` v4 read the partial bucket at the start of the window,
``[now - 24 h, next bucket)``, from the raw rows: up to an hour of them, so its cost followed the
minute of the hour (a long-tail tenant with 50,000 rows a day: p50 4.6 ms at minute 47, 5.5-5.9
ms at minutes 1-5 in ``acgs-db bench metrics``). v5 (sql/schema/tenant_metrics_24h_v5.sql) reads
whichever part of that bucket is shorter; when it is ``[bucket start, now - 24 h)``, it counts the
whole bucket like the hours after it (rollup, totals, hour bins, pending deltas) and subtracts
those raw rows. The body moves to ``tenant_metrics_24h_at(tenant, at)`` (the figures as the
seed's SQL gives them at ``at``), which the tests call at chosen minutes of the hour;
``tenant_metrics_24h(tenant)`` is it at ``now()``, and both are inlined.

Lock levels: none (replaces and creates functions; the view keeps calling the same function).
"""

from __future__ import annotations

from alembic import op

from acgs_db.resources import load_sql
from acgs_db.settings import Settings

revision = "0017_short_edge"
down_revision = "0016_day_coarse_bins"
branch_labels = None
depends_on = None

_AT = "tenant_metrics_24h_at(varchar, timestamptz)"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def upgrade() -> None:
    s = Settings.from_env()
    w, r = _q(s.writer_role), _q(s.reader_role)
    op.execute(load_sql("schema/tenant_metrics_24h_v5"))
    op.execute(f"REVOKE ALL ON FUNCTION {_AT} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {_AT} TO {w}, {r}")
    _own_store()


def downgrade() -> None:
    op.execute(load_sql("schema/tenant_metrics_24h_v4"))
    op.execute(f"DROP FUNCTION {_AT}")
    _own_store()


def _own_store() -> None:
    """What this migration made goes to the store's owner role (migration 0007)."""
    op.execute(f"SELECT acgs_own_store('{Settings.from_env().owner_role}')")
