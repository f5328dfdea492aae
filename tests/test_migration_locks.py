"""The locks each migration takes on what existed before it, as its docstring documents them.

Each revision is applied inside a transaction that is inspected (pg_locks of this backend)
before it is rolled back: a stronger lock than documented on an existing relation fails.
"""

from __future__ import annotations

from collections.abc import Iterator
from fnmatch import fnmatchcase

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from acgs_db.tooling import schema

# Lock strength, weakest first (PostgreSQL's table-level lock modes).
MODES = [
    "AccessShareLock",
    "RowShareLock",
    "RowExclusiveLock",
    "ShareUpdateExclusiveLock",
    "ShareLock",
    "ShareRowExclusiveLock",
    "ExclusiveLock",
    "AccessExclusiveLock",
]
# The strongest lock each revision may take on a relation that existed before it (a name or an
# fnmatch pattern); anything not listed may be locked at most AccessShareLock (read).
DOCUMENTED = {
    "0001_schema": {},
    "0002_maintenance": {},
    "0003_rollup": {
        "constitutional_validations": "ShareRowExclusiveLock",
        "tenant_constitutional_metrics_24h": "AccessExclusiveLock",
        "tenant_constitutional_metrics_24h_key": "AccessExclusiveLock",
    },
    "0004_batches": {},
    "0005_roles": {
        "constitutional_validations": "AccessExclusiveLock",
        "decision_validation_cache": "AccessExclusiveLock",
    },
    "0006_statistics": {
        "constitutional_validations": "ShareUpdateExclusiveLock",
        "constitutional_validations_*": "ShareUpdateExclusiveLock",  # every partition
    },
    # ALTER ... OWNER TO, FORCE ROW LEVEL SECURITY, the policies: every table of the store.
    "0007_trust": {
        "constitutional_validations*": "AccessExclusiveLock",
        "idx_constitutional_validations_*": "AccessExclusiveLock",  # indexes follow their table
        "decision_validation_cache*": "AccessExclusiveLock",
        "validation_rollup*": "AccessExclusiveLock",
        "ingest_batches*": "AccessExclusiveLock",
        "tenant_constitutional_metrics_24h*": "AccessExclusiveLock",
        "tenant_metrics_24h_current": "AccessExclusiveLock",
        "template_*_constitutional_validations": "AccessExclusiveLock",
    },
    "0008_lock_timeouts": {},
    "0009_batch_digest": {"ingest_batches": "AccessExclusiveLock"},
    # CREATE TRIGGER (the ledger capture and append-only triggers); the 'seal' row's CHECK.
    "0010_ledger": {
        "constitutional_validations": "ShareRowExclusiveLock",
        "acgs_exclusive*": "AccessExclusiveLock",
    },
    "0011_metrics_range": {"validation_rollup": "ShareLock"},
    "0012_batch_purge": {"ingest_batches": "ShareLock"},  # CREATE INDEX
    "0013_history_walk": {},
    # CREATE INDEX validation_rollup_delta_bucket, then its autovacuum reloptions.
    "0014_deferred_fold": {"validation_rollup_delta": "ShareLock"},
    # SELECT ... FOR UPDATE of the fold's row of acgs_exclusive, held while the bins are filled.
    "0015_hour_bins": {"acgs_exclusive*": "RowShareLock"},
    # The fold's row, as 0015; CREATE INDEX rollup_bins_day_by_bin (only the fold writes it).
    "0016_day_coarse_bins": {"acgs_exclusive*": "RowShareLock", "rollup_bins_day": "ShareLock"},
    "0017_short_edge": {},
    "0018_window_values": {},
}

LOCKS = text(
    "SELECT relation::int, mode FROM pg_locks"
    " WHERE pid = pg_backend_pid() AND locktype = 'relation'"
)
# Names by OID before the migration (a dropped relation's OID is still in pg_locks).
EXISTING = text(
    "SELECT c.oid::int, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname IN ('public', 'partman') AND c.relname NOT LIKE 'alembic_version%'"
)


def _allowed(allowed: dict[str, str], name: str) -> str:
    """The documented lock for ``name``: its own entry, else a matching pattern's."""
    if name in allowed:
        return allowed[name]
    matching = [mode for key, mode in allowed.items() if fnmatchcase(name, key)]
    return max(matching, key=MODES.index, default="AccessShareLock")


def _revisions() -> list[tuple[str, str | None]]:
    scripts = ScriptDirectory.from_config(schema.alembic_config())
    return [(s.revision, s.down_revision) for s in reversed(list(scripts.walk_revisions()))]  # type: ignore[misc]


@pytest.fixture
def engine(fresh_database: str) -> Iterator[Engine]:
    e = create_engine(schema.sqlalchemy_url(fresh_database), poolclass=NullPool)
    yield e
    e.dispose()


def test_every_revision_is_documented() -> None:
    assert [r for r, _ in _revisions()] == list(DOCUMENTED)


@pytest.mark.parametrize(("revision", "down"), _revisions())
def test_locks_on_existing_relations_are_as_documented(
    fresh_database: str, engine: Engine, revision: str, down: str | None
) -> None:
    if down is not None:
        schema.upgrade(fresh_database, down)
    config = schema.alembic_config(fresh_database)
    with engine.connect() as conn, conn.begin() as transaction:
        existing: dict[int, str] = dict(conn.execute(EXISTING).all())
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
        held = [(existing[oid], mode) for oid, mode in conn.execute(LOCKS) if oid in existing]
        transaction.rollback()
    allowed = DOCUMENTED[revision]
    too_strong = {
        (name, mode)
        for name, mode in held
        if MODES.index(mode) > MODES.index(_allowed(allowed, name))
    }
    assert too_strong == set()
    strongest: dict[str, str] = {}
    for name, mode in held:
        for key in allowed:
            if fnmatchcase(name, key) and MODES.index(mode) > MODES.index(
                strongest.get(key, "AccessShareLock")
            ):
                strongest[key] = mode
    assert {key: strongest.get(key) for key in allowed} == allowed  # the docs are exact


def test_the_digest_column_waits_for_a_busy_ledger_by_retries(fresh_database: str) -> None:
    """Migrations ask for their locks under ACGS_LOCK_TIMEOUT (2 s) and retry (env.py): a bulk
    insert holding the ledger for longer than one timeout (about 2.5 s here) makes 0007 and
    0009 retry, and they succeed once the holder commits, where a single attempt would have
    failed with a lock timeout."""
    import threading
    import time

    import psycopg

    schema.upgrade(fresh_database, "0006_statistics")
    with psycopg.connect(fresh_database) as holder:
        holder.execute("INSERT INTO ingest_batches (batch_id) VALUES ('busy')")
        failures: list[BaseException] = []

        def migrate() -> None:
            try:
                schema.upgrade(fresh_database, "0009_batch_digest")
            except BaseException as exc:  # reported below
                failures.append(exc)

        thread = threading.Thread(target=migrate)
        thread.start()
        time.sleep(2.5)
        assert thread.is_alive()  # still retrying
        holder.commit()
        thread.join(timeout=60)
    assert failures == []
    with psycopg.connect(fresh_database) as conn:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        assert row == ("0009_batch_digest",)
        assert conn.execute("SELECT digest FROM ingest_batches").fetchall() == [(None,)]
