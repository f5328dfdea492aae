"""Partition maintenance under lock_timeout, retried; no session-level lock kept on failure.

Revision ID: 0008_lock_timeouts
Revises: 0006_statistics
Create Date: 2026-12-01

acgs_partition_maintenance(p_parent, p_lock_timeout, p_retries) replaces
acgs_partition_maintenance(p_parent) (sql/schema/partition_maintenance_v3.sql). Each of its steps
(the moves out of the default partition, pg_partman's maintenance, the planner statistics) runs
under ``lock_timeout = p_lock_timeout`` (default 2 s), which it sets itself so that pg_cron and
psql runs are bounded too; a step that times out is tried again in a new transaction after an
exponential backoff with jitter, up to ``p_retries`` times (default 5), and the last failure
names the sessions holding locks on the table. pg_partman's maintenance is now
``partman.run_maintenance(<this parent>, p_analyze => false, p_jobmon => false)``, whose advisory
lock is transaction-scoped, instead of ``run_maintenance_proc()``, whose session-level lock a
failed run kept until its session ended (every other run meanwhile doing nothing) and which
maintained every partition set of the database. It refuses to run when pg_partman's retention
of the table is shorter than 28 days.

``acgs-db maintain`` and the pg_cron job pass ACGS_LOCK_TIMEOUT and ACGS_LOCK_RETRIES by name.

Lock levels: dropping and creating the procedure locks nothing that exists (its default records
a dependency on constitutional_validations without locking it).
"""

from __future__ import annotations

from alembic import op

from acgs_db.resources import load_sql
from acgs_db.settings import Settings

revision = "0008_lock_timeouts"
down_revision = "0007_trust"
branch_labels = None
depends_on = None

# Statements here hold no "%": Alembic's offline (--sql) rendering would double it.

_V3 = "acgs_partition_maintenance(regclass, interval, integer)"
_V2 = "acgs_partition_maintenance(regclass)"


def upgrade() -> None:
    # A new signature: the old procedure goes first, or CALL acgs_partition_maintenance() would
    # be ambiguous between the two.
    op.execute(
        "-- Replaced in this transaction by the 3-argument procedure, whose defaults accept the\n"
        "-- old calls (CALL acgs_partition_maintenance(parent)) unchanged.\n"
        "-- squawk-ignore ban-drop-function\n"
        f"DROP PROCEDURE {_V2}"
    )
    op.execute(load_sql("schema/partition_maintenance_v3"))
    op.execute(f"REVOKE ALL ON PROCEDURE {_V3} FROM PUBLIC")
    _own_store()


def downgrade() -> None:
    op.execute(f"DROP PROCEDURE {_V3}")
    op.execute(load_sql("schema/partition_maintenance_v2"))
    op.execute(f"REVOKE ALL ON PROCEDURE {_V2} FROM PUBLIC")
    _own_store()


def _own_store() -> None:
    """What this migration made goes to the store's owner role (migration 0007)."""
    op.execute(f"SELECT acgs_own_store('{Settings.from_env().owner_role}')")
