"""Ranged percentiles from coarse day bins: step 1 reads days x 64 counts, not days x 500.

Revision ID: 0016_day_coarse_bins
Revises: 0015_hour_bins
Create Date: 2026-12-07

``tenant_metrics_range()`` v2 placed each percentile rank in three steps (coarse bin, bin,
value); its first step coarsened the day bins on the fly, reading every (day, bin) of the range:
14,609 rows for 30 days of a tenant with 1,000,000 rows and a long tail of times, about a third
of its time. A new table the fold keeps, ``rollup_bins_day_coarse`` (counts of timed rows per
tenant, day and ``rollup_hour_bin()`` of the time: eight day bins in one), holds ~1,900 rows for
the same range; v3 (sql/schema/tenant_metrics_range_v3.sql) places the ranks there, then reads
the day bins of the chosen coarse bins only, through a new index ``rollup_bins_day_by_bin``
(tenant, bin, day). The fold, v6 (sql/schema/rollup_fold_v6.sql), keeps the table in the same
statement as the others; ``rollup_drop_retired()`` subtracts retired buckets from it as from
the day bins.

The table is filled from ``rollup_bins_day`` while this migration holds the fold's lock (the
row 'fold' of ``acgs_exclusive``): no fold runs in between. A fold of v5 already waiting for
that lock runs v5 once the migration commits and leaves its days without coarse counts; v3
checks that the coarse counts of the days it reads equal the timed rows of those days' hours
and otherwise reads the days from the day bins, as v2 did (tests/test_metrics_range.py).

Lock levels: ROW SHARE on ``acgs_exclusive`` and its fold row locked FOR UPDATE (folds wait;
writers append deltas, readers read); SHARE on ``rollup_bins_day`` while the index is built
(only the fold and the retention step write that table, and both wait for the fold row this
migration holds; readers go on). Creating the table and replacing functions lock nothing that
exists.
"""

from __future__ import annotations

from alembic import op

from acgs_db.resources import load_sql
from acgs_db.settings import Settings

revision = "0016_day_coarse_bins"
down_revision = "0015_hour_bins"
branch_labels = None
depends_on = None

# Statements here hold no "%": Alembic's offline (--sql) rendering would double it.


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def upgrade() -> None:
    s = Settings.from_env()
    w, r = _q(s.writer_role), _q(s.reader_role)
    op.execute("SELECT 1 FROM acgs_exclusive WHERE name = 'fold' FOR UPDATE")
    op.execute(
        """
        CREATE TABLE rollup_bins_day_coarse (
            tenant_id varchar(50) NOT NULL,
            day timestamptz NOT NULL,
            bin integer NOT NULL,
            n bigint NOT NULL,
            CONSTRAINT rollup_bins_day_coarse_pkey PRIMARY KEY (tenant_id, day, bin) INCLUDE (n)
        )
        """
    )
    op.execute(
        """
        INSERT INTO rollup_bins_day_coarse (tenant_id, day, bin, n)
        SELECT tenant_id, day, bin >> 3, sum(n)
        FROM rollup_bins_day
        GROUP BY 1, 2, 3
        """
    )
    # Only the fold and rollup_drop_retired() write rollup_bins_day, and both wait for the fold
    # row this migration holds: the SHARE lock of a plain build blocks no one else (readers
    # go on), and CONCURRENTLY cannot run inside the migration's transaction.
    op.execute(
        """
        -- squawk-ignore require-concurrent-index-creation
        CREATE INDEX rollup_bins_day_by_bin ON rollup_bins_day (tenant_id, bin, day) INCLUDE (n)
        """
    )
    op.execute(load_sql("schema/rollup_fold_v6"))
    op.execute(load_sql("schema/tenant_metrics_range_v3"))
    op.execute(f"GRANT SELECT ON rollup_bins_day_coarse TO {w}, {r}")
    _own_store()


def downgrade() -> None:
    op.execute(load_sql("schema/tenant_metrics_range_v2"))
    op.execute(load_sql("schema/rollup_fold_v5"))
    op.execute("DROP INDEX rollup_bins_day_by_bin")
    op.execute("DROP TABLE rollup_bins_day_coarse")
    _own_store()


def _own_store() -> None:
    """What this migration made goes to the store's owner role (migration 0007)."""
    op.execute(f"SELECT acgs_own_store('{Settings.from_env().owner_role}')")
