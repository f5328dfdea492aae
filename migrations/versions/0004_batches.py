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

Downgrade: refused while prepared transactions of multi-connection batches (gid
``acgs_db:...``) are pending in this database: ``acgs-db recover`` settles them first.
"""

from __future__ import annotations

from alembic import op

revision = "0004_batches"
down_revision = "0003_rollup"
branch_labels = None
depends_on = None

# Tables holding data that downgrade() drops: `acgs-db downgrade` refuses (without --yes)
# while any of them holds rows (acgs_db.tooling.schema.downgrade_plan).
DROPS_ON_DOWNGRADE = ("ingest_batches",)


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
    # A prepared part of a multi-connection batch needs the ledger to be settled (its part 0
    # row is the commit decision), and holds a lock DROP TABLE would wait on for ever.
    op.execute(
        """
        DO $check$
        BEGIN
            IF EXISTS (SELECT 1 FROM pg_prepared_xacts
                       WHERE left(gid, 8) = 'acgs_db:' AND database = current_database()) THEN
                RAISE EXCEPTION 'bulk-insert batches are prepared but not finished; dropping '
                                'ingest_batches would lose their commit decision'
                    USING HINT = 'Run acgs-db recover (it commits decided batches and rolls '
                                 'back the others), then downgrade again.';
            END IF;
        END
        $check$
        """
    )
    op.execute("DROP TABLE ingest_batches")
