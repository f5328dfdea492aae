"""Ledger: a tamper-evident audit trail of every validation, sealed into chained blocks.

Revision ID: 0010_ledger
Revises: 0009_batch_digest
Create Date: 2026-12-01

* **Entries.** A statement-level AFTER INSERT trigger with a transition table on
  ``constitutional_validations`` (``ledger_capture()``, SECURITY DEFINER, pinned search_path)
  appends one row to ``ledger_entries`` per statement, in the writer's transaction, whoever
  writes (repository, COPY, psql, pgbench): the writer's transaction id (``xid8``), the row
  count, the statement's ids as an ``int8multirange`` (ids come from an identity, and under
  concurrency a statement's ids interleave with another's, so a range and a count would not say
  which ids are its own; a multirange is one range when they are contiguous) with their
  minimum and maximum, and ``rows_digest``: SHA-256 of the rows' digests
  (``ledger_row_digest()``, SHA-256 of a canonical encoding of every column) concatenated in id
  order. Digesting each row first and then the list lets a verifier sort 40 bytes per row (id
  and digest) instead of whole rows. Writers only insert: entries take their ids from a sequence,
  nothing shared is updated, so writers never wait on each other.
* **Blocks.** ``ledger_seal()`` gathers the entries whose xid lies below the oldest running
  transaction (``pg_snapshot_xmin(pg_current_snapshot())``) and above the previous block's bound:
  every transaction that could add an entry there has ended, so the set is final whatever the
  commit order. It orders them by (xid, entry_id), builds a Merkle tree of their hashes
  (``ledger_entry_hash()``, ``ledger_merkle_root()``) and chains the block to the previous one
  (``block_hash = sha256(prev_hash || root || metadata)``). One seal at a time: a new row 'seal'
  of the owner-only ``acgs_exclusive`` (its CHECK admits 'seal' too), locked in the function,
  not an advisory lock.
* **Append-only.** BEFORE UPDATE OR DELETE OR TRUNCATE statement triggers on
  ``constitutional_validations``, ``ledger_entries`` and ``ledger_blocks`` raise, whoever runs
  the statement (grants alone would not stop the owner). They sit on the parent: pg_partman's
  moves out of the default partition act on partitions directly and keep ids and contents.
* **Retention drops recorded.** Event triggers (created here, as a superuser) on DROP TABLE:
  ``ledger_drop_start()`` (ddl_command_start) reads, before the drop, the count, ids and digest
  of each partition pg_partman's retention may drop (its upper bound older than the retention;
  a DROP TABLE does not say which table it drops at that point, so the candidates are those
  retention would drop) and ``ledger_drop_end()`` (sql_drop) records the partitions actually
  dropped as entries of kind 'drop'; a partition dropped before it was due is recorded without a
  count, so verification does not excuse its rows. It works whoever drops (pg_partman, a
  maintenance procedure rewritten later, psql). A superuser can drop the event trigger; the
  digest kept outside still catches it (the rows' entries no longer match and no drop covers
  them).
* **Existing rows.** One entry of kind 'backfill' covers the rows present at migration time,
  computed while the triggers' lock (SHARE ROW EXCLUSIVE) holds writes back, so no row falls
  between the backfill and the capture.

Lock levels: CREATE TRIGGER takes SHARE ROW EXCLUSIVE on ``constitutional_validations`` (the
parent; statement triggers are not cloned) until the end of the migration: writes wait while the
backfill digests the existing rows (reads go on). ``acgs_exclusive`` is altered (ACCESS
EXCLUSIVE, milliseconds; the fold and the refresh wait). Everything else is new.
"""

from __future__ import annotations

from alembic import op

from acgs_db.resources import load_sql
from acgs_db.settings import Settings

revision = "0010_ledger"
down_revision = "0009_batch_digest"
branch_labels = None
depends_on = None

# Statements here hold no "%": Alembic's offline (--sql) rendering would double it. Role names
# come from Settings, which admits only plain lower-case identifiers; they are quoted anyway.

_ROUTINES = (
    "ledger_row_digest(bigint, text, text, text, text, text, integer, timestamptz)",
    "ledger_entry_hash(bigint, xid8, text, bigint, int8multirange, bytea, text, text, timestamptz)",
    "ledger_merkle_root(bytea[])",
    "ledger_capture()",
    "ledger_append_only()",
    "ledger_seal()",
    "ledger_drop_start()",
    "ledger_drop_end()",
)
_APPEND_ONLY = ("constitutional_validations", "ledger_entries", "ledger_blocks")


def _q(name: str) -> str:
    return f'"{name}"'


def upgrade() -> None:
    s = Settings.from_env()
    w, r, f = (_q(x) for x in (s.writer_role, s.reader_role, s.refresher_role))

    op.execute(
        """
        DO $encoding$
        BEGIN
            IF current_setting('server_encoding') <> 'UTF8' THEN
                RAISE EXCEPTION 'the ledger needs a UTF8 database'
                    USING HINT = 'Its row digests are defined over UTF-8 (README, Tamper-evident'
                                 ' ledger); create the database WITH ENCODING ''UTF8''.';
            END IF;
        END
        $encoding$
        """
    )
    op.execute(
        """
        CREATE TABLE ledger_entries (
            entry_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            xid xid8 NOT NULL,
            kind text NOT NULL
                CONSTRAINT ledger_entries_kind_check CHECK (kind IN ('insert', 'backfill', 'drop')),
            row_count bigint,
            min_id bigint,
            max_id bigint,
            ids int8multirange NOT NULL DEFAULT '{}',
            rows_digest bytea,
            partition text,
            bounds text,
            logged_at timestamptz NOT NULL DEFAULT date_trunc('milliseconds', now())
        )
        """
    )
    op.execute("CREATE INDEX ledger_entries_xid ON ledger_entries (xid, entry_id)")
    op.execute(
        """
        CREATE TABLE ledger_blocks (
            block_id bigint PRIMARY KEY,
            prev_hash bytea NOT NULL,
            merkle_root bytea NOT NULL,
            xid_lo xid8 NOT NULL,
            xid_hi xid8 NOT NULL,
            entry_count bigint NOT NULL,
            row_count bigint NOT NULL,
            sealed_at timestamptz NOT NULL,
            block_hash bytea NOT NULL
        )
        """
    )
    op.execute(
        """
        CREATE TABLE ledger_drop_pending (
            xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
            partition_oid oid NOT NULL,
            partition text NOT NULL,
            bounds text,
            row_count bigint,
            min_id bigint,
            max_id bigint,
            ids int8multirange,
            rows_digest bytea,
            PRIMARY KEY (xid, partition_oid)
        )
        """
    )
    op.execute(
        "-- Widened in this transaction (re-added below with 'seal'): no client sees it missing.\n"
        "-- squawk-ignore ban-drop-constraint\n"
        "ALTER TABLE acgs_exclusive DROP CONSTRAINT acgs_exclusive_name_check"
    )
    op.execute("INSERT INTO acgs_exclusive (name) VALUES ('seal')")
    op.execute(
        "-- acgs_exclusive holds one row per exclusive job (three): validating is instant.\n"
        "-- squawk-ignore constraint-missing-not-valid\n"
        "ALTER TABLE acgs_exclusive ADD CONSTRAINT acgs_exclusive_name_check"
        " CHECK (name IN ('refresh', 'fold', 'seal'))"
    )

    for name in (
        "ledger_row_digest",
        "ledger_entry_hash",
        "ledger_merkle_root",
        "ledger_capture",
        "ledger_append_only",
        "ledger_seal",
        "ledger_drop_start",
        "ledger_drop_end",
    ):
        op.execute(load_sql(f"schema/{name}_v1"))

    op.execute(
        """
        CREATE TRIGGER constitutional_validations_ledger
        AFTER INSERT ON constitutional_validations
        REFERENCING NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION ledger_capture()
        """
    )
    for table in _APPEND_ONLY:
        op.execute(
            f"CREATE TRIGGER {table}_append_only"
            f" BEFORE UPDATE OR DELETE OR TRUNCATE ON {table}"
            " FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only()"
        )
    # The rows already there, under the triggers' lock (see the module docstring).
    op.execute(
        """
        INSERT INTO ledger_entries (xid, kind, row_count, min_id, max_id, ids, rows_digest)
        SELECT pg_current_xact_id(), 'backfill', count(*), min(v.id), max(v.id),
               range_agg(int8range(v.id, v.id, '[]')),
               sha256(string_agg(ledger_row_digest(v.id, v.tenant_id, v.decision_id,
                                                   v.constitutional_hash, v.score, v.details,
                                                   v.processing_time_ms, v.created_at),
                                 ''::bytea ORDER BY v.id))
        FROM (SELECT c.id, c.tenant_id, c.decision_id, c.constitutional_hash,
                     c.compliance_score::text AS score, c.validation_details::text AS details,
                     c.processing_time_ms, c.created_at
                FROM constitutional_validations AS c OFFSET 0) AS v
        HAVING count(*) > 0
        """
    )
    op.execute(
        """
        CREATE EVENT TRIGGER acgs_ledger_drop_start ON ddl_command_start
        WHEN TAG IN ('DROP TABLE')
        EXECUTE FUNCTION ledger_drop_start()
        """
    )
    op.execute(
        """
        CREATE EVENT TRIGGER acgs_ledger_drop_end ON sql_drop
        WHEN TAG IN ('DROP TABLE')
        EXECUTE FUNCTION ledger_drop_end()
        """
    )

    for routine in _ROUTINES:
        op.execute(f"REVOKE ALL ON ROUTINE {routine} FROM PUBLIC")
    op.execute(f"GRANT SELECT ON ledger_entries, ledger_blocks TO {w}, {r}")
    op.execute(f"GRANT EXECUTE ON FUNCTION ledger_seal() TO {w}, {f}")
    op.execute(f"SELECT acgs_own_store('{s.owner_role}')")


def downgrade() -> None:
    op.execute("DROP EVENT TRIGGER acgs_ledger_drop_end")
    op.execute("DROP EVENT TRIGGER acgs_ledger_drop_start")
    op.execute("DROP TRIGGER constitutional_validations_ledger ON constitutional_validations")
    for table in _APPEND_ONLY:
        op.execute(f"DROP TRIGGER {table}_append_only ON {table}")
    for routine in _ROUTINES:
        op.execute(f"DROP FUNCTION {routine}")
    op.execute("ALTER TABLE acgs_exclusive DROP CONSTRAINT acgs_exclusive_name_check")
    op.execute("DELETE FROM acgs_exclusive WHERE name = 'seal'")
    op.execute(
        "ALTER TABLE acgs_exclusive ADD CONSTRAINT acgs_exclusive_name_check"
        " CHECK (name IN ('refresh', 'fold'))"
    )
    op.execute("DROP TABLE ledger_drop_pending")
    op.execute("DROP TABLE ledger_blocks")
    op.execute("DROP TABLE ledger_entries")
