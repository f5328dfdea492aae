"""Ledger of bulk-insert batches: idempotent retries and two-phase multi-connection COPY.

Revision ID: 0004_batches
Revises: 0003_rollup
Create Date: 2026-11-26

``bulk_insert(records, batch_id=...)`` records the batch id in the same transaction as its rows,
so a retry after an ambiguous failure (connection lost at commit) writes the batch once. A COPY
over several connections prepares one transaction per connection (PREPARE TRANSACTION, gid
``acgs_db:<token>:<part>``) and records its batch, with the token, in part 0, which is
committed first: that committed row is the commit decision ``acgs-db recover`` reads after a
crash between the COMMIT PREPAREDs.

Lock levels: creates a new table only.
"""

from __future__ import annotations

from alembic import op

revision = "0004_batches"
down_revision = "0003_rollup"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE ingest_batches (
            batch_id varchar(200) PRIMARY KEY
                CONSTRAINT ingest_batches_batch_id_check CHECK (batch_id <> ''),
            rows bigint NOT NULL DEFAULT 0,
            parts integer NOT NULL DEFAULT 1,
            token uuid UNIQUE,
            committed_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE ingest_batches")
