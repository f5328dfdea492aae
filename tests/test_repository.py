"""ValidationRepository against a real server: round trips, bad input, COPY, reads, the cache."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from conftest import count_rows

from acgs_db import CONSTITUTIONAL_HASH, AcgsDbError, InvalidRecordError
from acgs_db.errors import BulkInsertError
from acgs_db.pool import Pool
from acgs_db.records import ValidationRecord
from acgs_db.repository import ValidationRepository
from acgs_db.settings import Settings

# -- round trips -------------------------------------------------------------------------


async def test_every_field_round_trips(repo: ValidationRepository, tenant: str) -> None:
    india = timezone(timedelta(hours=5, minutes=30))
    when = datetime(2026, 11, 20, 17, 45, 12, 123456, tzinfo=india)
    details = {"rules": ["a", "b"], "nested": {"ok": True, "n": 1.5, "none": None}, "ü": "✓"}
    record = ValidationRecord(tenant, "d-1", Decimal("0.1234"), details, 17, when)
    assert await repo.bulk_insert([record]) == 1

    [entry] = await repo.history(tenant, "d-1")
    assert entry.tenant_id == tenant and entry.decision_id == "d-1"
    assert entry.constitutional_hash == CONSTITUTIONAL_HASH
    assert entry.compliance_score == Decimal("0.1234")
    assert entry.validation_details == details
    assert entry.processing_time_ms == 17
    assert entry.created_at == when  # the same instant, returned in UTC
    assert entry.created_at.utcoffset() == timedelta(0)
    assert isinstance(entry.id, int)


async def test_scores_are_stored_at_the_column_precision(
    repo: ValidationRepository, tenant: str
) -> None:
    await repo.bulk_insert(
        [
            ValidationRecord(tenant, "d", 0.5, created_at=datetime(2026, 11, 1, tzinfo=UTC)),
            ValidationRecord(tenant, "d", 1, created_at=datetime(2026, 11, 2, tzinfo=UTC)),
            ValidationRecord(tenant, "d", 0.12345, created_at=datetime(2026, 11, 3, tzinfo=UTC)),
        ]
    )
    scores = [e.compliance_score for e in await repo.history(tenant, "d")]
    assert scores == [Decimal("0.1235"), Decimal("1.0000"), Decimal("0.5000")]


async def test_json_values_of_every_kind_round_trip(
    repo: ValidationRepository, tenant: str
) -> None:
    values: list[object] = [
        None,
        {},
        [],
        "text",
        3,
        2.5,
        True,
        {"deep": [[[{"x": "y"}]]]},
        "\\u0000 literal",
    ]
    base = datetime(2026, 11, 1, tzinfo=UTC)
    records = [
        ValidationRecord(tenant, "d", 0.5, v, created_at=base + timedelta(seconds=i))
        for i, v in enumerate(values)
    ]
    await repo.bulk_insert(records)
    stored = [e.validation_details for e in reversed(await repo.history(tenant, "d", limit=20))]
    assert stored == values


async def test_a_missing_created_at_is_the_server_transaction_time(
    repo: ValidationRepository, pool: Pool, tenant: str
) -> None:
    before = await pool.fetchval("SELECT now()")
    await repo.bulk_insert([ValidationRecord(tenant, "d", 0.5), ValidationRecord(tenant, "d", 0.6)])
    after = await pool.fetchval("SELECT now()")
    times = {e.created_at for e in await repo.history(tenant, "d")}
    assert len(times) == 1  # one transaction, one now()
    assert before <= times.pop() <= after


async def test_single_insert_returns_the_id(repo: ValidationRepository, tenant: str) -> None:
    new_id = await repo.insert(ValidationRecord(tenant, "d", 0.75, {"a": 1}, 3))
    [entry] = await repo.history(tenant, "d")
    assert entry.id == new_id
    assert entry.validation_details == {"a": 1}


async def test_single_insert_checks_its_record(
    repo: ValidationRepository, pool: Pool, tenant: str
) -> None:
    with pytest.raises(InvalidRecordError, match="compliance_score"):
        await repo.insert(ValidationRecord(tenant, "d", 2.0))
    assert await count_rows(pool, tenant) == 0


# -- bad input: a clear error and nothing written -------------------------------------------


def _bad(tenant: str) -> list[ValidationRecord]:
    future = datetime.now(UTC) + timedelta(hours=1)
    return [
        ValidationRecord(tenant, "d", 0.5, constitutional_hash="ffffffffffffffff"),
        ValidationRecord(tenant, "d", 1.5),
        ValidationRecord(tenant, "d", float("nan")),
        ValidationRecord(tenant, "d", 0.5, processing_time_ms=-5),
        ValidationRecord(tenant, "d", 0.5, processing_time_ms=10**10),
        ValidationRecord(tenant, "", 0.5),
        ValidationRecord(tenant, "d" * 101, 0.5),
        ValidationRecord(tenant + "\x00", "d", 0.5),
        ValidationRecord(tenant, "d", 0.5, {"k": {1, 2}}),
        ValidationRecord(tenant, "d", 0.5, {"k": "\x00"}),
        ValidationRecord(tenant, "d", 0.5, {"k": "x" * 70_000}),
        ValidationRecord(tenant, "d", 0.5, created_at=datetime(2026, 1, 1)),
        ValidationRecord(tenant, "d", 0.5, created_at=future),
    ]


@pytest.mark.parametrize("case", range(13))
async def test_a_bad_record_in_a_batch_names_its_index_and_writes_nothing(
    repo: ValidationRepository, pool: Pool, tenant: str, case: int
) -> None:
    good = [ValidationRecord(tenant, f"d{i}", 0.9, {"i": i}, i) for i in range(5000)]
    batch = [*good[:2500], _bad(tenant)[case], *good[2500:]]
    with pytest.raises(InvalidRecordError) as caught:
        await repo.bulk_insert(batch)
    assert caught.value.index == 2500
    assert "record 2500" in str(caught.value)
    assert await count_rows(pool, tenant) == 0


async def test_commit_every_says_how_many_rows_were_committed(
    repo: ValidationRepository, pool: Pool, tenant: str
) -> None:
    records = [ValidationRecord(tenant, "d", 0.9) for _ in range(25)]
    records.append(ValidationRecord(tenant, "d", 7.0))
    with pytest.raises(InvalidRecordError) as caught:
        await repo.bulk_insert(records, commit_every=10)
    assert caught.value.index == 25
    assert caught.value.committed == 20
    assert "20 rows of earlier chunks were committed" in str(caught.value)
    assert await count_rows(pool, tenant) == 20


async def test_commit_every_writes_a_stream_in_chunks(
    repo: ValidationRepository, pool: Pool, tenant: str
) -> None:
    records = (ValidationRecord(tenant, "d", 0.9) for _ in range(35))
    assert await repo.bulk_insert(records, commit_every=10) == 35
    assert await count_rows(pool, tenant) == 35


async def test_a_server_side_failure_rolls_the_whole_call_back(
    repo: ValidationRepository, pool: Pool, tenant: str
) -> None:
    records = [ValidationRecord(tenant, "d", 0.5) for _ in range(1000)]

    async def failing() -> AsyncIterator[ValidationRecord]:
        for r in records:
            yield r
        raise RuntimeError("upstream broke")

    with pytest.raises(RuntimeError, match="upstream broke"):
        await repo.bulk_insert(failing())
    assert await count_rows(pool, tenant) == 0
    assert await repo.bulk_insert(records) == 1000


async def test_a_server_error_is_a_bulk_insert_error_and_writes_nothing(
    database_url: str, pool: Pool, tenant: str
) -> None:
    from acgs_db.pool import create_pool

    read_only = await create_pool(
        database_url,
        min_size=1,
        max_size=1,
        server_settings={"default_transaction_read_only": "on"},
    )
    try:
        repo = ValidationRepository(read_only, Settings.from_env({}))
        with pytest.raises(BulkInsertError, match="read-only transaction") as caught:
            await repo.bulk_insert([ValidationRecord(tenant, "d", 0.5)] * 10)
        assert caught.value.committed == 0
    finally:
        await read_only.close()
    assert await count_rows(pool, tenant) == 0


# -- COPY completeness ---------------------------------------------------------------------


async def test_a_100k_row_copy_is_complete(
    repo: ValidationRepository, pool: Pool, tenant: str
) -> None:
    base = datetime.now(UTC) - timedelta(days=3)
    records = [
        ValidationRecord(
            tenant,
            f"d{i % 997}",
            Decimal(i % 10_001) / 10_000,
            {"i": i},
            None if i % 101 == 0 else i % 5000,
            base + timedelta(milliseconds=i),
        )
        for i in range(100_000)
    ]

    async def stream() -> AsyncIterator[ValidationRecord]:
        for r in records:
            yield r

    assert await repo.bulk_insert(stream()) == 100_000
    row = await pool.fetchrow(
        """
        SELECT count(*), sum(compliance_score), sum(processing_time_ms),
               count(processing_time_ms), sum((validation_details->>'i')::bigint),
               count(DISTINCT decision_id), min(created_at), max(created_at)
        FROM constitutional_validations WHERE tenant_id = $1
        """,
        tenant,
    )
    assert row is not None
    assert row[0] == 100_000
    assert row[1] == sum(Decimal(i % 10_001) / 10_000 for i in range(100_000))
    assert row[2] == sum(i % 5000 for i in range(100_000) if i % 101)
    assert row[3] == sum(1 for i in range(100_000) if i % 101)
    assert row[4] == sum(range(100_000))
    assert row[5] == 997
    assert (row[6], row[7]) == (records[0].created_at, records[-1].created_at)


# -- reads ---------------------------------------------------------------------------------


async def test_history_is_newest_first_limited_and_tenant_scoped(
    repo: ValidationRepository, tenant: str
) -> None:
    base = datetime.now(UTC) - timedelta(days=40)  # spans several monthly partitions
    mine = [
        ValidationRecord(tenant, "shared", 0.5, {"n": i}, i, base + timedelta(days=i))
        for i in range(40)
    ]
    theirs = [ValidationRecord(tenant + "x", "shared", 0.1, None, 1, base)]
    await repo.bulk_insert(mine + theirs)
    history = await repo.history(tenant, "shared", limit=5)
    assert [e.validation_details["n"] for e in history] == [39, 38, 37, 36, 35]
    assert all(e.tenant_id == tenant for e in await repo.history(tenant, "shared", limit=100))
    assert await repo.history(tenant, "unknown") == []


@pytest.mark.parametrize("limit", [0, -1, 1001, True, 2.5])
async def test_history_refuses_a_bad_limit(
    repo: ValidationRepository, tenant: str, limit: object
) -> None:
    with pytest.raises(AcgsDbError, match="limit"):
        await repo.history(tenant, "d", limit=limit)  # type: ignore[arg-type]


async def test_history_refuses_bad_ids(repo: ValidationRepository) -> None:
    with pytest.raises(InvalidRecordError, match="tenant_id"):
        await repo.history("", "d")
    with pytest.raises(InvalidRecordError, match="decision_id"):
        await repo.history("t", "x\x00")


async def test_decision_scores(repo: ValidationRepository, tenant: str) -> None:
    decision = f"decision-of-{tenant}"
    await repo.bulk_insert(
        [ValidationRecord(tenant, decision, 0.25, None, 4), ValidationRecord(tenant, decision, 1)]
    )
    scores = sorted(await repo.decision_scores(decision))
    assert [(s.compliance_score, s.processing_time_ms) for s in scores] == [
        (Decimal("0.2500"), 4),
        (Decimal("1.0000"), None),
    ]


# -- metrics -------------------------------------------------------------------------------


async def test_view_and_realtime_metrics_agree(
    repo: ValidationRepository, pool: Pool, tenant: str
) -> None:
    now = datetime.now(UTC)
    records = [
        ValidationRecord(
            tenant,
            f"d{i}",
            Decimal(50 + i % 50) / 100,
            None,
            None if i % 7 == 0 else (i * 37) % 250,
            now - timedelta(minutes=i),
        )
        for i in range(1000)
    ] + [ValidationRecord(tenant, "old", 0.1, None, 9999, now - timedelta(hours=25))]
    await repo.bulk_insert(records)
    await pool.execute("SELECT refresh_tenant_metrics_24h()")

    from_view = await repo.tenant_metrics(tenant)
    stale = ValidationRepository(pool, Settings.from_env({}, metrics_staleness=0.0))
    realtime = await stale.tenant_metrics(tenant)
    assert from_view is not None and realtime is not None
    assert (from_view.source, realtime.source) == ("view", "realtime")
    assert replace(realtime, source="view", as_of=from_view.as_of) == from_view
    assert from_view.total_validations == 1000
    in_window = [r for r in records if r.decision_id != "old"]
    assert from_view.failed_validations == sum(
        r.compliance_score < Decimal("0.95") for r in in_window
    )
    assert from_view.constitutional_violations == sum(
        r.compliance_score < Decimal("0.90") for r in in_window
    )


async def test_a_tenant_missing_from_the_view_gets_realtime_figures(
    repo: ValidationRepository, pool: Pool, tenant: str
) -> None:
    await pool.execute("SELECT refresh_tenant_metrics_24h()")
    assert await repo.tenant_metrics(tenant) is None
    await repo.insert(ValidationRecord(tenant, "d", 0.8, None, 5))
    metrics = await repo.tenant_metrics(tenant)
    assert metrics is not None
    assert metrics.source == "realtime"
    assert metrics.total_validations == 1 and metrics.constitutional_violations == 1


async def test_an_unpopulated_view_falls_back_to_realtime(
    migrated_database: str, tenant: str
) -> None:
    from acgs_db.pool import create_pool

    p = await create_pool(migrated_database, min_size=1, max_size=2)
    try:
        await p.execute("REFRESH MATERIALIZED VIEW tenant_constitutional_metrics_24h WITH NO DATA")
        repo = ValidationRepository(p, Settings.from_env({}))
        await repo.insert(ValidationRecord(tenant, "d", 0.99, None, 5))
        metrics = await repo.tenant_metrics(tenant)
        assert metrics is not None and metrics.source == "realtime"
        # the first refresh of an unpopulated view is the plain form, then it serves reads
        assert await p.fetchval("SELECT refresh_tenant_metrics_24h()") is True
        metrics = await repo.tenant_metrics(tenant)
        assert metrics is not None and metrics.source == "view"
    finally:
        await p.close()


# -- decision cache ------------------------------------------------------------------------


async def test_cache_hit_update_and_expiry(repo: ValidationRepository, tenant: str) -> None:
    assert await repo.get_cached_decision(tenant, "h1") is None
    await repo.cache_decision(tenant, "h1", 0.97, {"why": "ok"}, ["r1", "r2"])
    hit = await repo.get_cached_decision(tenant, "h1")
    assert hit is not None
    assert (hit.validation_score, hit.compliance_details, hit.requirements) == (
        Decimal("0.9700"),
        {"why": "ok"},
        ["r1", "r2"],
    )
    await repo.cache_decision(tenant, "h1", 0.5)
    hit = await repo.get_cached_decision(tenant, "h1")
    assert hit is not None and hit.validation_score == Decimal("0.5") and hit.requirements is None
    await asyncio.sleep(0.05)
    assert await repo.get_cached_decision(tenant, "h1", max_age=timedelta(milliseconds=10)) is None
    assert await repo.get_cached_decision(tenant + "-other", "h1") is None


async def test_purge_removes_only_expired_entries(
    repo: ValidationRepository, pool: Pool, tenant: str
) -> None:
    await repo.cache_decision(tenant, "old", 0.9)
    await pool.execute(
        "UPDATE decision_validation_cache SET created_at = now() - interval '1 hour'"
        " WHERE tenant_id = $1",
        tenant,
    )
    await repo.cache_decision(tenant, "new", 0.9)
    assert await repo.purge_expired_cache() >= 1
    assert await repo.get_cached_decision(tenant, "new") is not None
    left = await pool.fetch(
        "SELECT decision_hash FROM decision_validation_cache WHERE tenant_id = $1", tenant
    )
    assert [r[0] for r in left] == ["new"]


async def test_cache_refuses_bad_input(repo: ValidationRepository, tenant: str) -> None:
    with pytest.raises(InvalidRecordError, match="validation_score"):
        await repo.cache_decision(tenant, "h", 1.5)
    with pytest.raises(InvalidRecordError, match="compliance_details"):
        await repo.cache_decision(tenant, "h", 0.5, {"x": float("inf")})
    with pytest.raises(InvalidRecordError, match="decision_hash"):
        await repo.cache_decision(tenant, "h" * 129, 0.5)
    with pytest.raises(AcgsDbError, match="max_age"):
        await repo.get_cached_decision(tenant, "h", max_age=timedelta(0))
