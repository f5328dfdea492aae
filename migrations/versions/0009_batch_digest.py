"""Digest of each bulk-insert batch's rows in its ledger row.

Revision ID: 0009_batch_digest
Revises: 0006_statistics
Create Date: 2026-12-01

``ingest_batches.digest`` is the SHA-256 of the batch's rows (encoding in
:mod:`acgs_db.digest`), so that a retry with a committed batch id tells the same rows (nothing
is written) from different ones (``BatchConflictError``). Nullable: batches written before this
revision have none, and a retry of one of them counts as the same rows.

Lock levels: ACCESS EXCLUSIVE on ``ingest_batches`` for an instant: adding a nullable column
without a default changes the catalog only (no rewrite, no scan). The lock is requested under a
1 s ``lock_timeout`` and retried (up to 30 times, half a second apart), so that a long
transaction holding the ledger (a bulk insert under way) never queues every writer behind the
migration.
"""

from __future__ import annotations

from alembic import op

revision = "0009_batch_digest"
down_revision = "0007_trust"
branch_labels = None
depends_on = None


def _with_lock_retries(statement: str) -> str:
    """``statement`` in a DO block that waits at most 1 s for its lock, then retries."""
    return f"""
        DO $retry$
        DECLARE
            previous text := current_setting('lock_timeout');
        BEGIN
            FOR attempt IN 1..30 LOOP
                BEGIN
                    PERFORM set_config('lock_timeout', '1s', true);
                    {statement};
                    PERFORM set_config('lock_timeout', previous, true);
                    RETURN;
                EXCEPTION WHEN lock_not_available THEN
                    PERFORM pg_sleep(0.5);
                END;
            END LOOP;
            RAISE EXCEPTION 'ingest_batches stayed locked by other sessions for 45 s'
                USING HINT = 'Find the holders in pg_locks and run the migration again.';
        END
        $retry$
        """


def upgrade() -> None:
    op.execute(_with_lock_retries("ALTER TABLE ingest_batches ADD COLUMN digest bytea"))


def downgrade() -> None:
    op.execute(_with_lock_retries("ALTER TABLE ingest_batches DROP COLUMN digest"))
