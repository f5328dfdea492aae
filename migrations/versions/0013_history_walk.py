"""History look-ups that cost one partition, not every partition of the retention.

Revision ID: 0013_history_walk
Revises: 0012_batch_purge
Create Date: 2026-12-01

``acgs_history(tenant, decision, hash, limit)`` is the history look-up (``sql/queries/history.sql``
calls it): a plpgsql function that ``acgs_history_compile()`` (sql/schema/history_compile_v1.sql)
writes from the catalog, one statement per partition naming it, newest month first, stopping once
the limit is met. A call plans, locks and opens the partition holding the newest rows (plus, in
the same statement, one-time probes of the default partition and of the premade months ahead of
now(), normally empty, which send the look-up to the parent when they hold the decision), not
the 18 partitions and 38 relations a generic plan on the parent locks and opens. The answer is
exactly the old statement's (tests/test_history_walk.py). SECURITY INVOKER (a SECURITY DEFINER
call measured some 20 % of the look-up), EXECUTE for the writer and reader roles, which are given
SELECT on the partitions (their policy shows them every row of the parent anyway).
``acgs_history_scoped()``, the same walk for tenant logins (``sql/queries/history_scoped.sql``):
SECURITY DEFINER with a pinned search_path, applying the parent's policies itself for the
session's login first (tenant logins still cannot read partitions); EXECUTE for the tenant role.

``acgs_partition_maintenance()`` becomes v4 (sql/schema/partition_maintenance_v4.sql; same
signature, CREATE OR REPLACE): the steps that create or drop partitions rewrite the function in
the same transaction.

Lock levels: none on existing relations (functions are created and replaced, SELECT is granted
on the partitions: GRANT takes no table lock; the compile reads the catalog).
"""

from __future__ import annotations

from alembic import op

from acgs_db.resources import load_sql
from acgs_db.settings import Settings

revision = "0013_history_walk"
down_revision = "0012_batch_purge"
branch_labels = None
depends_on = None

DROPS_ON_DOWNGRADE: tuple[str, ...] = ()

# Statements here hold no "%": Alembic's offline (--sql) rendering would double it.

_HISTORY = "acgs_history(varchar, varchar, varchar, integer)"
_SCOPED = "acgs_history_scoped(varchar, varchar, varchar, integer)"
_COMPILE = "acgs_history_compile(regclass)"
_MAINTENANCE = "acgs_partition_maintenance(regclass, interval, integer)"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def upgrade() -> None:
    s = Settings.from_env()
    w, r, t = _q(s.writer_role), _q(s.reader_role), _q(s.tenant_role)
    op.execute(load_sql("schema/history_compile_v1"))
    op.execute(f"REVOKE ALL ON FUNCTION {_COMPILE} FROM PUBLIC")
    op.execute("SELECT acgs_history_compile()")
    op.execute(f"REVOKE ALL ON FUNCTION {_HISTORY}, {_SCOPED} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {_HISTORY} TO {w}, {r}")
    op.execute(f"GRANT EXECUTE ON FUNCTION {_SCOPED} TO {t}")
    op.execute(load_sql("schema/partition_maintenance_v4"))
    _own_store()


def downgrade() -> None:
    op.execute(f"DROP PROCEDURE {_MAINTENANCE}")
    op.execute(load_sql("schema/partition_maintenance_v3"))
    op.execute(f"REVOKE ALL ON PROCEDURE {_MAINTENANCE} FROM PUBLIC")
    op.execute(f"DROP FUNCTION {_HISTORY}, {_SCOPED}")
    _revoke_partition_grants()
    op.execute(f"DROP FUNCTION {_COMPILE}")
    _own_store()


def _revoke_partition_grants() -> None:
    """Partitions carry no grants again (acgs_history_compile() gave the service roles SELECT)."""
    op.execute(load_sql("schema/history_partition_grants_revoke_v1"))


def _own_store() -> None:
    """What this migration made goes to the store's owner role (migration 0007)."""
    op.execute(f"SELECT acgs_own_store('{Settings.from_env().owner_role}')")
