"""24-hour and ranged percentiles from hour bins: the pass follows a few bins, not every time.

Revision ID: 0015_hour_bins
Revises: 0014_deferred_fold
Create Date: 2026-12-07

``tenant_metrics_24h()`` (the view's and the real-time 24-hour figures) summed every (hour, value)
pair of its window to place PERCENTILE_CONT's ranks: ~18,000 rollup rows for a tenant with a long
tail of processing times (50,000 rows, 4,000 distinct times). A new table the fold keeps,
``rollup_bins_hour`` (counts of timed rows per tenant, hour bucket and ``rollup_hour_bin()`` of
the time: eight ``rollup_bin()`` bins in one, sql/schema/rollup_bins_hour_v1.sql), holds ~1,600
rows for the same window; v4 of the function (sql/schema/tenant_metrics_24h_v4.sql) finds the
bins holding the four ranks there and reads only those bins value by value (index
``validation_rollup_value``), as ``tenant_metrics_range()`` does with its day bins. The fold, v5
(sql/schema/rollup_fold_v5.sql), keeps the new table in the same statement as the others;
``rollup_drop_retired()`` drops its retired hours.

``tenant_metrics_range()`` becomes v2 (sql/schema/tenant_metrics_range_v2.sql): the whole hours
outside whole days were read value by value (20 of 27 ms for a tenant with 1,000,000 rows and a
long tail over 30 days); v2 counts them from the hour bins and places each rank in three steps
(coarse bin, bin, value). Both functions compute the chosen bins' running counts once, not once
per rank.

The repository's two statements (sql/queries/metrics_realtime.sql, metrics_range.sql) call them
through ``tenant_metrics_24h_planned()`` and ``tenant_metrics_range_planned()``
(sql/schema/metrics_planned_v1.sql): PL/pgSQL wrappers that keep one generic plan per session,
since planning v4 took longer than running it and prepared statements kept custom plans.

The table is filled from ``validation_rollup`` while this migration holds the fold's lock (the
row 'fold' of ``acgs_exclusive``): no fold runs in between. A fold of the old code that was
already waiting for that lock runs the old code once the migration commits and leaves its hours
without bins; v4 (and the ranged v2 above) check that the bins count exactly the timed rows of
the hours they cover and otherwise read those hours value by value, as before, so the figures
stay exact (tests/test_rollup.py).

Lock levels: ROW SHARE on ``acgs_exclusive`` and its fold row locked FOR UPDATE (folds wait;
writers append deltas, readers read). Creating the table and replacing functions lock nothing
that exists; the fill reads the rollup once.
"""

from __future__ import annotations

from alembic import op

from acgs_db.resources import load_sql
from acgs_db.settings import Settings

revision = "0015_hour_bins"
down_revision = "0014_deferred_fold"
branch_labels = None
depends_on = None

# Statements here hold no "%": Alembic's offline (--sql) rendering would double it.

_BINS = "rollup_hour_bin(integer), rollup_hour_bin_lo(integer)"
_PLANNED = (
    "tenant_metrics_24h_planned(varchar),"
    " tenant_metrics_range_planned(varchar, timestamptz, timestamptz)"
)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def upgrade() -> None:
    s = Settings.from_env()
    w, r = _q(s.writer_role), _q(s.reader_role)
    op.execute("SELECT 1 FROM acgs_exclusive WHERE name = 'fold' FOR UPDATE")
    op.execute(
        """
        CREATE TABLE rollup_bins_hour (
            tenant_id varchar(50) NOT NULL,
            bucket timestamptz NOT NULL,
            bin integer NOT NULL,
            n bigint NOT NULL,
            CONSTRAINT rollup_bins_hour_pkey PRIMARY KEY (tenant_id, bucket, bin) INCLUDE (n)
        )
        """
    )
    op.execute(load_sql("schema/rollup_bins_hour_v1"))
    op.execute(
        """
        INSERT INTO rollup_bins_hour (tenant_id, bucket, bin, n)
        SELECT tenant_id, bucket, rollup_hour_bin(processing_time_ms), sum(validations)
        FROM validation_rollup
        WHERE processing_time_ms IS NOT NULL
        GROUP BY 1, 2, 3
        """
    )
    op.execute(load_sql("schema/rollup_fold_v5"))
    op.execute(load_sql("schema/tenant_metrics_24h_v4"))
    op.execute(load_sql("schema/tenant_metrics_range_v2"))
    op.execute(load_sql("schema/metrics_planned_v1"))
    op.execute(f"REVOKE ALL ON FUNCTION {_BINS}, {_PLANNED} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {_BINS}, {_PLANNED} TO {w}, {r}")
    op.execute(f"GRANT SELECT ON rollup_bins_hour TO {w}, {r}")
    _own_store()


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {_PLANNED}")
    op.execute(load_sql("schema/tenant_metrics_range_v1"))
    op.execute(load_sql("schema/tenant_metrics_24h_v3"))
    op.execute(load_sql("schema/rollup_fold_v4"))
    op.execute(f"DROP FUNCTION {_BINS}")
    op.execute("DROP TABLE rollup_bins_hour")
    _own_store()


def _own_store() -> None:
    """What this migration made goes to the store's owner role (migration 0007)."""
    op.execute(f"SELECT acgs_own_store('{Settings.from_env().owner_role}')")
