"""Partition maintenance in the database: acgs_partition_maintenance(), shared by every scheduler.

Revision ID: 0002_maintenance
Revises: 0001_schema
Create Date: 2026-11-26

``CALL acgs_partition_maintenance()`` first moves the rows stranded in the default partition of
constitutional_validations into partitions of their own (``partman.partition_data_proc``, no
pause between batches), then runs ``partman.run_maintenance_proc()``: premade partitions, and
retention, which drops partitions older than it, including any just made for stranded rows that
old. Rows left in the default make every later maintenance run fail once one of them lies in a
partition maintenance wants to create ("updated partition constraint for default partition would
be violated"); rows older than every partition never fail it but escape retention forever.

pg_cron (``acgs-db schedule --pg-cron``), psql (``scripts/partman-maintenance.sh``) and
``acgs-db maintain`` all call it. Both pg_partman procedures COMMIT, so it must be called on its
own, outside a transaction block (autocommit), and it may carry neither SECURITY DEFINER nor a
SET clause (PostgreSQL forbids transaction control in either). It therefore cannot pin its
search_path; instead its argument's default, ``'constitutional_validations'::regclass``, is
resolved once, here, in the migration's schema, and stored as the table's OID, so that a call
from any search_path maintains the right table.

Lock levels: creating the procedure locks nothing that exists (its default records a dependency
on constitutional_validations without locking it).
"""

from __future__ import annotations

from alembic import op

from acgs_db.resources import load_sql

revision = "0002_maintenance"
down_revision = "0001_schema"
branch_labels = None
depends_on = None

# Statements here hold no "%": Alembic's offline (--sql) rendering would double it. That rules
# out format() and RAISE placeholders, hence the concatenation with quote_ident().


def upgrade() -> None:
    op.execute(load_sql("schema/partition_maintenance_v1"))
    op.execute("REVOKE ALL ON PROCEDURE acgs_partition_maintenance(regclass) FROM PUBLIC")


def downgrade() -> None:
    op.execute("DROP PROCEDURE IF EXISTS acgs_partition_maintenance(regclass)")
