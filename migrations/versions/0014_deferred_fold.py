"""Refresh not delayed by backfills: the refresh folds the window's deltas, slices fold the rest.

Revision ID: 0014_deferred_fold
Revises: 0013_history_walk
Create Date: 2026-12-01

The fold becomes ranged (sql/schema/rollup_fold_v4.sql): ``rollup_fold_range(from, until)``
folds the pending deltas of the buckets in ``[from, until)`` into ``validation_rollup``,
``rollup_totals_hour`` and ``rollup_bins_day`` in one statement, as v3 did for every delta.
``refresh_tenant_metrics_24h()`` (sql/schema/refresh_function_v4.sql) folds only the buckets
from ``rollup_window_line()`` on (the window's first bucket, less one of margin); the older
deltas (a backfill) are the backlog, folded oldest first in slices of N hour buckets by
``fold_rollup_backlog(N)`` (sql/schema/rollup_backlog_v1.sql), which the refresher runs between
refreshes and ``acgs-db maintain`` runs until the backlog is empty. ``rollup_backlog()`` says
how many delta rows and buckets wait and the oldest of them. ``fold_validation_rollup()`` still
folds everything (and drops the buckets of retired partitions, now ``rollup_drop_retired()``,
which the slices run too). The view and ``tenant_metrics_range()`` already read the pending
deltas of the buckets they cover, so every figure stays exact while the backlog waits.

The delta queue gets an index by bucket, ``validation_rollup_delta_bucket``: the window's fold,
the view's tenant list and the slices read their range of buckets only, never the rows (live
or dead) of other buckets; the README ("Refreshing") has the measurements behind this choice
against truncated alternating or partitioned queues. Its autovacuum runs after 10,000 dead rows
and its statistics after 10,000 changes, whatever its size (reloptions), so that the dead rows
of one large fold do not wait for a fifth of the table to die.

Lock levels: SHARE on ``validation_rollup_delta`` (CREATE INDEX: writers, whose triggers append
to it, wait for the build, which reads the pending deltas only, usually a few thousand rows),
then SHARE UPDATE EXCLUSIVE (the reloptions). Replacing and creating functions lock nothing
that exists.
"""

from __future__ import annotations

from alembic import op

from acgs_db.resources import load_sql
from acgs_db.settings import Settings

revision = "0014_deferred_fold"
down_revision = "0013_history_walk"
branch_labels = None
depends_on = None

# Statements here hold no "%": Alembic's offline (--sql) rendering would double it.

_INTERNAL = (
    "rollup_fold_range(timestamptz, timestamptz)",
    "rollup_drop_retired()",
)
_SLICE = "fold_rollup_backlog(integer)"
_BACKLOG = "rollup_backlog()"
_LINE = "rollup_window_line()"
_RELOPTIONS = (
    "autovacuum_vacuum_scale_factor",
    "autovacuum_vacuum_threshold",
    "autovacuum_analyze_scale_factor",
    "autovacuum_analyze_threshold",
)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def upgrade() -> None:
    s = Settings.from_env()
    f, w, r = _q(s.refresher_role), _q(s.writer_role), _q(s.reader_role)
    op.execute(
        "-- CONCURRENTLY cannot run inside the migration's transaction (its lock_timeout and\n"
        "-- retries, env.py). SHARE holds back only writers' delta appends, for one read of\n"
        "-- the pending deltas (usually a few thousand rows); readers go on.\n"
        "-- squawk-ignore require-concurrent-index-creation\n"
        "CREATE INDEX validation_rollup_delta_bucket ON validation_rollup_delta (bucket)"
    )
    op.execute(
        """
        ALTER TABLE validation_rollup_delta SET (
            autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 10000,
            autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 10000)
        """
    )
    op.execute(load_sql("schema/rollup_fold_v4"))
    op.execute(load_sql("schema/rollup_backlog_v1"))
    op.execute(load_sql("schema/refresh_function_v4"))
    op.execute(
        f"REVOKE ALL ON FUNCTION {', '.join(_INTERNAL)}, {_SLICE}, {_BACKLOG}, {_LINE} FROM PUBLIC"
    )
    op.execute(f"GRANT EXECUTE ON FUNCTION {_SLICE} TO {f}, {w}")
    op.execute(f"GRANT EXECUTE ON FUNCTION {_BACKLOG} TO {f}, {w}, {r}")
    op.execute(f"GRANT EXECUTE ON FUNCTION {_LINE} TO {f}, {w}, {r}")
    _own_store()


def downgrade() -> None:
    # Pending deltas of the backlog stay: v3's fold takes them with the others.
    op.execute(load_sql("schema/refresh_function_v3"))
    op.execute(load_sql("schema/rollup_fold_v3"))
    op.execute(f"DROP FUNCTION {_SLICE}, {_BACKLOG}, {_LINE}")
    op.execute(f"DROP FUNCTION {', '.join(_INTERNAL)}")
    op.execute(f"ALTER TABLE validation_rollup_delta RESET ({', '.join(_RELOPTIONS)})")
    op.execute("DROP INDEX validation_rollup_delta_bucket")
    _own_store()


def _own_store() -> None:
    """What this migration made goes to the store's owner role (migration 0007)."""
    op.execute(f"SELECT acgs_own_store('{Settings.from_env().owner_role}')")
