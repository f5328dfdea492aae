"""The tamper-evident ledger (migration 0010): entries from every write path, sealed blocks,
append-only validations, recorded retention drops, and verification that catches what a
superuser could do behind the triggers' back, naming the block and the rows."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg.abc import Params
from psycopg.conninfo import make_conninfo

from acgs_db import ledger
from acgs_db.partitions import maintain
from acgs_db.pool import create_pool
from acgs_db.records import ValidationRecord
from acgs_db.repository import ValidationRepository
from acgs_db.settings import Settings
from acgs_db.tooling import schema

SETTINGS = Settings.from_env({})
PARENT = "public.constitutional_validations"
INSERT = (
    "INSERT INTO constitutional_validations (tenant_id, decision_id, compliance_score,"
    " validation_details, processing_time_ms, created_at)"
    " SELECT %s, 'd-' || i, (i %% 100) / 100.0,"
    "        jsonb_build_object('i', i, 'z', 'é\"\\', 'a', jsonb_build_array(1.50, null)),"
    "        CASE WHEN i %% 3 = 0 THEN NULL ELSE i END,"
    "        now() - CAST(%s AS interval) + i * interval '1 minute'"
    " FROM generate_series(1, %s) i"
)


@pytest.fixture
def store(fresh_database: str) -> str:
    """A database of its own, migrated to head: tampering tests spoil it."""
    schema.upgrade(fresh_database)
    return fresh_database


@pytest.fixture
def db(store: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(store, autocommit=True) as conn:
        yield conn


def _insert(conn: psycopg.Connection, tenant: str, rows: int, age: str = "1 hour") -> None:
    conn.execute(INSERT, (tenant, age, rows))


def _ids(conn: psycopg.Connection, tenant: str) -> list[int]:
    return [
        r[0]
        for r in conn.execute(
            "SELECT id FROM constitutional_validations WHERE tenant_id = %s ORDER BY id", (tenant,)
        )
    ]


def _sealed(url: str) -> ledger.Digest:
    assert ledger.seal(url) is not None
    digest = ledger.latest_digest(url)
    assert digest is not None
    return digest


def _tamper(conn: psycopg.Connection, statement: str, params: Params | None = None) -> None:
    """What a superuser can do behind the triggers' back."""
    with conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute(statement, params)


def _kinds(report: ledger.VerifyReport) -> set[str]:
    return {p.kind for p in report.problems}


# -- every write path, then verify ------------------------------------------------------------


def test_rows_from_every_write_path_verify_against_the_digest(store: str) -> None:
    records = [
        ValidationRecord("t-repo", f"d-{i}", 0.5 + i / 1000, {"k": i, "s": "ü"}, i or None)
        for i in range(200)
    ]

    async def through_the_repository() -> None:
        pool = await create_pool(store, min_size=1, max_size=4)
        try:
            repo = ValidationRepository(pool, SETTINGS)
            await repo.insert(ValidationRecord("t-repo", "one", 0.97, None, None))
            assert await repo.bulk_insert(records) == 200
            assert await repo.bulk_insert(records, connections=2) == 200
            assert await repo.bulk_insert(records, commit_every=70) == 200
        finally:
            await pool.close()

    asyncio.run(through_the_repository())
    with psycopg.connect(store, autocommit=True) as conn:
        conn.cursor().executemany(
            "INSERT INTO constitutional_validations (tenant_id, decision_id, compliance_score)"
            " VALUES (%s, %s, %s)",
            [("t-psql", f"d-{i}", 0.25) for i in range(5)],
        )
        with conn.cursor().copy(
            "COPY constitutional_validations (tenant_id, decision_id, compliance_score,"
            " validation_details, created_at) FROM STDIN"
        ) as copy:
            for i in range(50):
                copy.write_row(("t-copy", f"d-{i}", "0.1", '{"b": 2, "a": 1}', datetime.now(UTC)))
        _insert(conn, "t-sql", 30)
        statements = conn.execute(
            "SELECT count(*), sum(row_count) FROM ledger_entries WHERE kind = 'insert'"
        ).fetchone()
        stored = conn.execute("SELECT count(*) FROM constitutional_validations").fetchone()
    # One entry per statement: the insert, the COPYs (two-phase parts, chunks), each psql INSERT.
    assert statements is not None and statements[0] >= 10
    assert statements[1] == 1 + 200 * 3 + 5 + 50 + 30
    assert stored == (statements[1],)

    digest = _sealed(store)
    report = ledger.verify(store, digest)
    assert report.ok, report.lines()
    assert report.digest_matched is True
    assert (report.rows, report.entries, report.blocks) == (stored[0], statements[0], 1)


def test_verify_since_a_block_checks_what_came_after(store: str, db: psycopg.Connection) -> None:
    _insert(db, "a", 20)
    first = _sealed(store)
    _insert(db, "b", 10)
    second = _sealed(store)
    _insert(db, "c", 5)  # the unsealed tail

    report = ledger.verify(store, second, since=first.block_id)
    assert report.ok, report.lines()
    assert (report.blocks, report.rows) == (1, 15)

    [tail_id] = _ids(db, "c")[-1:]
    _tamper(db, "UPDATE constitutional_validations SET decision_id = 'x' WHERE id = %s", (tail_id,))
    late = ledger.verify(store, second, since=first.block_id)
    assert not late.ok
    [problem] = late.problems
    assert (problem.kind, problem.block) == ("changed", None)
    assert problem.ids == ((_ids(db, "c")[0], tail_id),)


def test_concurrent_writers_and_seals_every_entry_in_one_block(store: str) -> None:
    errors: list[BaseException] = []
    stop = threading.Event()

    def writer(n: int) -> None:
        try:
            with psycopg.connect(store, autocommit=True) as w:
                for i in range(25):
                    _insert(w, f"w-{n}", 20 + i)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def sealer() -> None:
        try:
            while not stop.is_set():
                ledger.seal(store)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    writers = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    seal_thread = threading.Thread(target=sealer)
    seal_thread.start()
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    seal_thread.join()
    assert errors == []
    ledger.seal(store)  # what the sealer left, if anything
    digest = ledger.latest_digest(store)
    with psycopg.connect(store, autocommit=True) as conn:
        unsealed = conn.execute(
            "SELECT count(*) FROM ledger_entries e WHERE NOT EXISTS (SELECT 1 FROM ledger_blocks b"
            " WHERE e.xid >= b.xid_lo AND e.xid < b.xid_hi)"
        ).fetchone()
        assert unsealed == (0,)
        sealed = conn.execute("SELECT sum(entry_count) FROM ledger_blocks").fetchone()
        assert sealed == (100,)
    report = ledger.verify(store, digest)
    assert report.ok, report.lines()
    assert report.rows == 4 * sum(range(20, 45))


def test_an_open_transaction_holds_back_the_seal_of_later_transactions(
    store: str, db: psycopg.Connection
) -> None:
    with psycopg.connect(store) as early:
        _insert(early, "early", 3)  # has the smaller xid, commits last
        _insert(db, "late", 4)
        assert ledger.seal(store) is None  # the later entry is not final while early may add
        early.commit()
    result = ledger.seal(store)
    assert result is not None and (result.entry_count, result.row_count) == (2, 7)
    order = [
        r[0]
        for r in db.execute(
            "SELECT v.tenant_id FROM ledger_entries e JOIN constitutional_validations v"
            " ON v.id = e.min_id ORDER BY e.xid, e.entry_id"
        )
    ]
    assert order == ["early", "late"]
    assert ledger.verify(store, ledger.latest_digest(store)).ok


# -- append-only ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE constitutional_validations SET compliance_score = 1",
        "DELETE FROM constitutional_validations",
        "TRUNCATE constitutional_validations",
        "UPDATE ledger_entries SET row_count = 0",
        "DELETE FROM ledger_entries",
        "TRUNCATE ledger_blocks",
        "DELETE FROM ledger_blocks",
    ],
)
@pytest.mark.parametrize("role", [None, SETTINGS.owner_role, SETTINGS.writer_role])
def test_no_role_may_update_or_delete(
    conn: psycopg.Connection, statement: str, role: str | None
) -> None:
    """The superuser, the owner (the trigger refuses) and a writer (no grant either)."""
    _insert(conn, "kept", 3)
    counts = (
        "SELECT (SELECT count(*) FROM constitutional_validations),"
        " (SELECT count(*) FROM ledger_entries)"
    )
    before = conn.execute(counts).fetchone()
    with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
        if role:
            conn.execute(f'SET LOCAL ROLE "{role}"')
        conn.execute(statement)
    assert conn.execute(counts).fetchone() == before


# -- tampering, each caught and named ---------------------------------------------------------


def test_an_update_with_triggers_off_is_caught(store: str, db: psycopg.Connection) -> None:
    _insert(db, "victim", 10)
    _insert(db, "other", 5)
    digest = _sealed(store)
    ids = _ids(db, "victim")
    _tamper(
        db, "UPDATE constitutional_validations SET compliance_score = 1 WHERE id = %s", (ids[4],)
    )
    report = ledger.verify(store, digest)
    assert not report.ok
    [problem] = report.problems
    assert (problem.kind, problem.block) == ("changed", 1)
    assert problem.ids == ((ids[0], ids[-1]),)
    assert report.lines()[0] == "ledger verification FAILED: first bad block 1"
    assert report.digest_matched is True  # the chain itself is intact


def test_a_delete_with_triggers_off_is_caught(store: str, db: psycopg.Connection) -> None:
    _insert(db, "victim", 10)
    digest = _sealed(store)
    ids = _ids(db, "victim")
    _tamper(db, "DELETE FROM constitutional_validations WHERE id IN (%s, %s)", (ids[2], ids[3]))
    report = ledger.verify(store, digest)
    [problem] = report.problems
    assert (problem.kind, problem.block, problem.ids) == ("missing", 1, ((ids[2], ids[3]),))


def test_a_row_inserted_with_triggers_off_is_caught(store: str, db: psycopg.Connection) -> None:
    _insert(db, "honest", 5)
    digest = _sealed(store)
    _tamper(
        db,
        "INSERT INTO constitutional_validations (tenant_id, decision_id, compliance_score)"
        " VALUES ('forged', 'd', 1)",
    )
    [forged] = _ids(db, "forged")
    report = ledger.verify(store, digest)
    [problem] = report.problems
    assert (problem.kind, problem.block, problem.ids) == ("unrecorded", None, ((forged, forged),))
    assert f"rows present without a ledger entry: ids {forged}" in report.lines()[1]


def test_an_edited_entry_is_caught(store: str, db: psycopg.Connection) -> None:
    _insert(db, "a", 5)
    _insert(db, "b", 5)
    digest = _sealed(store)
    # The rows changed and the entry's digest made to match them: the block no longer does.
    ids = _ids(db, "b")
    _tamper(
        db, "UPDATE constitutional_validations SET compliance_score = 0 WHERE id = %s", (ids[0],)
    )
    db.execute(
        "SELECT set_config('acgs.t', encode(sha256(string_agg(ledger_row_digest(id, tenant_id,"
        " decision_id, constitutional_hash, compliance_score::text, validation_details::text,"
        " processing_time_ms, created_at), ''::bytea ORDER BY id)), 'hex'), false)"
        " FROM constitutional_validations WHERE tenant_id = 'b'"
    )
    _tamper(
        db,
        "UPDATE ledger_entries SET rows_digest = decode(current_setting('acgs.t'), 'hex')"
        " WHERE min_id = %s",
        (ids[0],),
    )
    report = ledger.verify(store, digest)
    assert [(p.kind, p.block) for p in report.problems] == [("block", 1), ("digest", 1)]
    assert "Merkle root" in report.problems[0].detail
    assert report.digest_matched is False  # the recomputed chain is not the one kept outside


def test_an_edited_block_is_caught(store: str, db: psycopg.Connection) -> None:
    for tenant in ("a", "b", "c"):
        _insert(db, tenant, 3)
        digest = _sealed(store)
    _tamper(db, "UPDATE ledger_blocks SET row_count = row_count + 1 WHERE block_id = 2")
    report = ledger.verify(store, digest)
    assert not report.ok and report.first_bad_block == 2
    assert {p.block for p in report.problems} == {2, 3}  # block 3 no longer chains to it


def test_a_removed_block_is_caught(store: str, db: psycopg.Connection) -> None:
    for tenant in ("a", "b", "c"):
        _insert(db, tenant, 3)
        digest = _sealed(store)
    _tamper(db, "DELETE FROM ledger_blocks WHERE block_id = 2")
    report = ledger.verify(store, digest)
    assert report.first_bad_block == 2
    assert any(
        "missing: the chain goes from block 1 to block 3" in p.detail for p in report.problems
    )

    _tamper(db, "DELETE FROM ledger_blocks WHERE block_id = 3")  # the block the digest names
    report = ledger.verify(store, digest)
    assert ("digest", 3) in {(p.kind, p.block) for p in report.problems}


def test_a_partition_edited_directly_is_caught(store: str, db: psycopg.Connection) -> None:
    _insert(db, "victim", 6)
    digest = _sealed(store)
    [partition] = {
        r[0]
        for r in db.execute(
            "SELECT tableoid::regclass::text FROM constitutional_validations"
            " WHERE tenant_id = 'victim'"
        )
    }
    # No trigger of the parent fires for a statement on the partition itself.
    db.execute(f"UPDATE {partition} SET validation_details = '{{}}' WHERE tenant_id = 'victim'")  # noqa: S608
    db.execute(f"DELETE FROM {partition} WHERE id = (SELECT max(id) FROM {partition})")  # noqa: S608
    report = ledger.verify(store, digest)
    ids = _ids(db, "victim")
    assert [(p.kind, p.block) for p in report.problems] == [("missing", 1)]
    assert report.problems[0].ids == ((ids[-1] + 1, ids[-1] + 1),)
    # The update alone, on rows all present: their digest no longer matches.
    _insert(db, "victim2", 3)
    again = _sealed(store)
    [partition2] = {
        r[0]
        for r in db.execute(
            "SELECT tableoid::regclass::text FROM constitutional_validations"
            " WHERE tenant_id = 'victim2'"
        )
    }
    db.execute(f"UPDATE {partition2} SET processing_time_ms = 7 WHERE tenant_id = 'victim2'")  # noqa: S608
    changed = ledger.verify(store, again)
    assert ("changed", 2) in {(p.kind, p.block) for p in changed.problems}


def test_verify_passes_on_untouched_data_and_names_another_databases_digest(
    store: str, db: psycopg.Connection
) -> None:
    _insert(db, "a", 4)
    digest = _sealed(store)
    assert ledger.verify(store, digest).ok
    wrong = ledger.Digest(digest.block_id, "00" * 32)
    report = ledger.verify(store, wrong)
    assert not report.ok and report.problems[0].kind == "digest"


# -- maintenance and retention ----------------------------------------------------------------


def test_rows_moved_out_of_the_default_partition_keep_verifying(
    store: str, db: psycopg.Connection
) -> None:
    _insert(db, "stale", 6, "8 months")  # no partition yet: the default
    _insert(db, "ahead", 2, "-6 months")
    _insert(db, "now", 3)
    assert db.execute("SELECT count(*) FROM constitutional_validations_default").fetchone() == (8,)
    digest = _sealed(store)

    report = maintain(store, SETTINGS)

    assert report.rows_moved == 8
    assert db.execute("SELECT count(*) FROM constitutional_validations_default").fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM ledger_entries").fetchone() == (3,)  # no new entry
    verified = ledger.verify(store, digest)
    assert verified.ok, verified.lines()
    assert verified.rows == 11


def test_retention_drops_are_recorded_and_expected(store: str, db: psycopg.Connection) -> None:
    db.execute(
        "SELECT partman.create_partition_time(%s, ARRAY[now() - interval '15 months'])", (PARENT,)
    )
    _insert(db, "expired", 3, "15 months")
    _insert(db, "kept", 2)
    digest = _sealed(store)

    report = maintain(store, SETTINGS)

    assert len(report.dropped) == 1
    drop = db.execute(
        "SELECT partition, row_count, bounds FROM ledger_entries WHERE kind = 'drop'"
    ).fetchone()
    assert drop is not None and drop[0] == report.dropped[0] and drop[1] == 3
    assert "FOR VALUES FROM" in drop[2]
    newer = ledger.latest_digest(store)  # maintenance sealed the drop entry
    assert newer is not None and newer.block_id == report.sealed_block == digest.block_id + 1
    for expected in (digest, newer):
        verified = ledger.verify(store, expected)
        assert verified.ok, verified.lines()
        assert (verified.drops, verified.rows_dropped, verified.rows) == (1, 3, 2)


def test_maintenance_seals_its_drop_entries_and_the_digest_after_it_verifies(
    store: str, db: psycopg.Connection
) -> None:
    db.execute(
        "SELECT partman.create_partition_time(%s, ARRAY[now() - interval '15 months'])", (PARENT,)
    )
    _insert(db, "expired", 3, "15 months")
    _insert(db, "kept", 2)
    before = _sealed(store)

    report = maintain(store, SETTINGS)

    assert len(report.dropped) == 1 and report.seal_error is None
    digest = ledger.latest_digest(store)
    assert digest is not None and report.sealed_block == digest.block_id == before.block_id + 1
    assert report.sealed_entries == 1  # the drop entry retention wrote
    assert f"sealed ledger block {digest.block_id}: 1 entry" in report.lines()
    unsealed = db.execute(
        "SELECT count(*) FROM ledger_entries AS e"
        " WHERE e.xid >= (SELECT max(b.xid_hi) FROM ledger_blocks AS b)"
    ).fetchone()
    assert unsealed == (0,)
    verified = ledger.verify(store, digest)
    assert verified.ok, verified.lines()
    assert verified.digest_matched and (verified.drops, verified.rows) == (1, 2)


def test_maintenance_with_nothing_final_to_seal_reports_no_block(
    store: str, db: psycopg.Connection
) -> None:
    _insert(db, "sealed", 2)
    _sealed(store)

    report = maintain(store, SETTINGS)

    assert (report.sealed_block, report.sealed_entries, report.seal_error) == (None, 0, None)
    assert not any(line.startswith("sealed ledger block") for line in report.lines())


def test_a_partition_dropped_outside_retention_is_not_excused(
    store: str, db: psycopg.Connection
) -> None:
    _insert(db, "victim", 4, "-2 months")  # a premade partition of the future
    digest = _sealed(store)
    [partition] = {
        r[0]
        for r in db.execute(
            "SELECT tableoid::regclass::text FROM constitutional_validations"
            " WHERE tenant_id = 'victim'"
        )
    }
    ids = _ids(db, "victim")
    db.execute(f"DO $$ BEGIN EXECUTE 'DROP TABLE {partition}'; END $$")
    report = ledger.verify(store, digest)
    assert [p.kind for p in report.problems] == ["missing", "unrecorded"]
    assert report.problems[0].ids == ((ids[0], ids[-1]),)
    assert partition in report.problems[1].detail


def test_a_premade_empty_partition_dropped_by_hand_changes_nothing(
    store: str, db: psycopg.Connection
) -> None:
    _insert(db, "a", 2)
    digest = _sealed(store)
    newest = db.execute(
        "SELECT partition_schemaname || '.' || partition_tablename"
        " FROM partman.show_partitions(%s, 'DESC') LIMIT 1",
        (PARENT,),
    ).fetchone()
    assert newest is not None
    db.execute(f"DROP TABLE {newest[0]}")
    assert db.execute(
        "SELECT row_count, rows_digest IS NOT NULL FROM ledger_entries WHERE kind = 'drop'"
    ).fetchone() == (None, False)  # not due for retention: not counted
    assert ledger.verify(store, digest).ok


# -- the command line -------------------------------------------------------------------------


def _cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACGS_")}
    return subprocess.run(
        [sys.executable, "-m", "acgs_db", "ledger", *args],
        env={**env, "ACGS_DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_commands_seal_print_the_digest_and_verify(
    store: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    assert _cli(store, "digest").returncode == 1
    _insert(db, "a", 3)
    sealed = _cli(store, "seal")
    assert sealed.returncode == 0 and sealed.stdout.startswith("sealed block 1: 1 entries, 3 rows")
    assert _cli(store, "seal").stdout.strip() == "nothing to seal: no entry is final yet"
    out = _cli(store, "digest", "--json")
    kept = tmp_path / "digest.json"
    kept.write_text(out.stdout)
    assert json.loads(out.stdout)["block_id"] == 1

    ok = _cli(store, "verify", "--digest", str(kept))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("verified: blocks 1..1") and "the digest matches" in ok.stdout
    assert _cli(store, "verify", "--digest", out.stdout, "--since", "1").returncode == 0

    [victim] = _ids(db, "a")[:1]
    _tamper(db, "DELETE FROM constitutional_validations WHERE id = %s", (victim,))
    bad = _cli(store, "verify", "--digest", str(kept))
    assert bad.returncode == 1
    assert bad.stdout.splitlines() == [
        "ledger verification FAILED: first bad block 1",
        f"block 1: rows of entry 1 are missing (deleted without a recorded drop): ids {victim}",
    ]
    garbled = _cli(store, "verify", "--digest", "{not json")
    assert garbled.returncode == 1 and "not a ledger digest" in garbled.stderr


def test_digest_round_trips_and_files_are_read(tmp_path: Path) -> None:
    d = ledger.Digest(7, "ab" * 32, "2026-12-01T00:00:00+00:00")
    path = tmp_path / "d.json"
    path.write_text(d.to_json())
    assert ledger.Digest.parse(d.to_json()) == d == ledger.Digest.parse(str(path))
    with pytest.raises(ledger.LedgerError, match="cannot read"):
        ledger.Digest.parse(str(tmp_path / "absent.json"))


def test_the_python_encoding_is_the_sql_one(db: psycopg.Connection) -> None:
    at = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC) - timedelta(days=400)
    row = db.execute(
        "SELECT ledger_row_digest(42, 'tën', 'd', 'cdd01ef066bc6cf2', 0.9500::text,"
        " %s::jsonb::text, NULL, %s), %s::jsonb::text",
        ('{"z": 1, "a": [1.0, "\\u00e9"]}', at, '{"z": 1, "a": [1.0, "\\u00e9"]}'),
    ).fetchone()
    assert row is not None
    assert bytes(row[0]) == ledger.row_digest(
        42, "tën", "d", "cdd01ef066bc6cf2", "0.9500", row[1], None, at
    )
    hashes = [bytes([i]) * 32 for i in range(5)]
    root = db.execute("SELECT ledger_merkle_root(%s::bytea[])", (hashes,)).fetchone()
    assert root is not None and bytes(root[0]) == ledger.merkle_root(hashes)


def test_a_statement_whose_ids_are_not_contiguous_lists_them(
    store: str, db: psycopg.Connection
) -> None:
    db.execute(
        "INSERT INTO constitutional_validations (id, tenant_id, decision_id, compliance_score)"
        " VALUES (1000, 'x', 'a', 0.5), (1002, 'x', 'b', 0.5), (1003, 'x', 'c', 0.5)"
    )
    _insert(db, "y", 2)  # the identity's own ids, contiguous: one range
    entries = db.execute("SELECT ids::text, row_count FROM ledger_entries ORDER BY entry_id")
    assert entries.fetchall() == [("{[1000,1001),[1002,1004)}", 3), ("{[1,3)}", 2)]
    assert ledger.verify(store, _sealed(store)).ok


def test_the_reader_role_can_verify_and_the_writer_can_seal(
    store: str, db: psycopg.Connection
) -> None:
    _insert(db, "a", 3)
    as_writer = make_conninfo(store, options=f"-crole={SETTINGS.writer_role}")
    as_reader = make_conninfo(store, options=f"-crole={SETTINGS.reader_role}")
    assert ledger.seal(as_writer) is not None
    report = ledger.verify(as_reader, ledger.latest_digest(as_reader))
    assert report.ok and report.rows == 3
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        ledger.seal(as_reader)


async def test_the_refresher_seals_on_its_schedule(migrated_database: str) -> None:
    from faults_support import until

    from acgs_db.refresher import MetricsRefresher

    with psycopg.connect(migrated_database, autocommit=True) as conn:
        _insert(conn, "sealed-by-refresher", 5)
    pool = await create_pool(migrated_database, settings=SETTINGS, min_size=1, max_size=2)
    try:
        refresher = MetricsRefresher(pool, 0.2, settings=SETTINGS)
        refresher.start()
        try:
            await until(lambda: refresher.status.last_sealed_block is not None)
        finally:
            await refresher.stop(grace=5)
        assert refresher.status.last_seal is not None and refresher.status.seal_failures == 0
    finally:
        await pool.close()
    digest = ledger.latest_digest(migrated_database)
    assert digest is not None and digest.block_id == refresher.status.last_sealed_block
    assert ledger.verify(migrated_database, digest).ok
