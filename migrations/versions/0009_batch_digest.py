"""Digest of each bulk-insert batch's rows in its ledger row.

Revision ID: 0009_batch_digest
Revises: 0008_lock_timeouts
Create Date: 2026-12-01

``ingest_batches.digest`` is the SHA-256 of the batch's rows (encoding in
:mod:`acgs_db.digest`), so that a retry with a committed batch id tells the same rows (nothing
is written) from different ones (``BatchConflictError``). Nullable: batches written before this
revision have none, and a retry of one of them counts as the same rows.

Lock levels: ACCESS EXCLUSIVE on ``ingest_batches`` for an instant: adding a nullable column
without a default changes the catalog only (no rewrite, no scan). Like every step, it is
requested under ACGS_LOCK_TIMEOUT and retried with backoff (migrations/env.py), so that a long
transaction holding the ledger (a bulk insert under way) never queues every writer behind the
migration.
"""

from __future__ import annotations

from alembic import op

revision = "0009_batch_digest"
down_revision = "0008_lock_timeouts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE ingest_batches ADD COLUMN digest bytea")


def downgrade() -> None:
    op.execute("ALTER TABLE ingest_batches DROP COLUMN digest")
