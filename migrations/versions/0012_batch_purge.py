"""Purge of the batch ledger: ingest_batches_purge() and an index on committed_at.

Revision ID: 0012_batch_purge
Revises: 0011_metrics_range
Create Date: 2026-12-01

``ingest_batches`` gains a row per batch (every audit-writer batch, every ``bulk_insert`` with a
``batch_id``) and nothing removed them. ``ingest_batches_purge(retention, max_rows)``
(sql/schema/ingest_batches_purge_v1.sql, SECURITY DEFINER, pinned search_path) deletes at most
``max_rows`` rows older than ``retention`` (at least an hour, so that no retry window is cut
short), oldest first through the new index ``ingest_batches_committed_at``, and never the row of
a multi-connection batch with a part still prepared. The writer and refresher roles may run it
(the refresher's loop calls it, ACGS_BATCH_LEDGER_RETENTION); nothing is PUBLIC's.
``ingest_batches`` is not append-only (migration 0010 protects the validations and the ledger's
entries and blocks, not this retry state).

Lock levels: SHARE on ``ingest_batches`` while CREATE INDEX reads it: batch claims (the audit
writer, ``bulk_insert(batch_id=...)``) wait for the build, which reads the ledger once
(measured: 2.6 s for the same index over 1,000,000 rows on the dev VM at load average 14;
keep the ledger purged and it stays small); everything else is new.
"""

from __future__ import annotations

from alembic import op

from acgs_db.resources import load_sql
from acgs_db.settings import Settings

revision = "0012_batch_purge"
down_revision = "0011_metrics_range"
branch_labels = None
depends_on = None

# Statements here hold no "%": Alembic's offline (--sql) rendering would double it.

_PURGE = "ingest_batches_purge(interval, integer)"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def upgrade() -> None:
    s = Settings.from_env()
    op.execute(
        "-- CONCURRENTLY cannot run inside the migration's transaction (its lock_timeout and\n"
        "-- retries, env.py). SHARE holds back only batch claims, for the one read of the\n"
        "-- ledger (2.6 s per million rows measured); readers and plain inserts go on.\n"
        "-- squawk-ignore require-concurrent-index-creation\n"
        "CREATE INDEX ingest_batches_committed_at ON ingest_batches (committed_at)"
    )
    op.execute(load_sql("schema/ingest_batches_purge_v1"))
    op.execute(f"REVOKE ALL ON FUNCTION {_PURGE} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {_PURGE} TO {_q(s.writer_role)}, {_q(s.refresher_role)}")
    _own_store()


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {_PURGE}")
    op.execute("DROP INDEX ingest_batches_committed_at")
    _own_store()


def _own_store() -> None:
    """What this migration made goes to the store's owner role (migration 0007)."""
    op.execute(f"SELECT acgs_own_store('{Settings.from_env().owner_role}')")
