"""Exact metrics over any range: tenant_metrics_range(), its tenant-login variant, the repository
and ``acgs-db metrics`` (migration 0011).

The figures are compared with the seed's own aggregate SQL over the same range
(``sql/schema/seed_metrics_24h.sql`` with the 24-hour condition replaced by ``[since, until)``
and the tenant), both ways with EXCEPT, in one transaction: with every delta pending, after a
fold, and after inserts, updates and deletes left pending on top of folded buckets.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import psycopg
import pytest
from conftest import bypass_append_only, create_login, oldest_partition_start
from psycopg import sql

from acgs_db import TenantScopeError, ValidationRepository, create_pool, tenants
from acgs_db.errors import AcgsDbError
from acgs_db.resources import load_sql
from acgs_db.settings import Settings

SETTINGS = Settings.from_env({})
_SEED_WINDOW = "WHERE created_at >= NOW() - INTERVAL '24 hours'"
_COLUMNS = (
    "tenant_id, constitutional_hash, avg_compliance_score, total_validations,"
    " failed_validations, avg_processing_time_ms, p95_processing_time_ms,"
    " p99_processing_time_ms, constitutional_violations, last_updated"
)
# A fixed anchor, one hour past a bucket boundary plus an odd offset, so that ranges built
# from it start and end inside hours.
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(
    minutes=23, seconds=17, microseconds=250_000
)


def _seed_range() -> sql.SQL:
    """The seed's aggregate SQL over [%(since)s, %(until)s) for %(tenant)s."""
    seed = load_sql("schema/seed_metrics_24h")
    assert _SEED_WINDOW in seed
    return sql.SQL(
        seed.replace(
            _SEED_WINDOW,
            "WHERE created_at >= %(since)s AND created_at < %(until)s AND tenant_id = %(tenant)s",
        )
    )


def _seed_row(url: str, tenant: str, since: datetime, until: datetime) -> tuple[Any, ...]:
    """The seed's figures (without last_updated) over [since, until) for ``tenant``."""
    query = sql.SQL(
        "SELECT total_validations, failed_validations, constitutional_violations,"
        " avg_compliance_score, avg_processing_time_ms, p95_processing_time_ms,"
        " p99_processing_time_ms FROM ({}) AS s"
    ).format(_seed_range())
    with psycopg.connect(url) as conn:
        row = conn.execute(query, {"tenant": tenant, "since": since, "until": until}).fetchone()
    assert row is not None
    return tuple(row)


def _ranges() -> list[tuple[datetime, datetime]]:
    day = NOW.replace(hour=0, minute=0, second=0, microsecond=0)
    month = NOW.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    fixed = [
        (NOW - timedelta(days=30), NOW),  # 30 days, edges inside hours
        (NOW - timedelta(days=45), NOW + timedelta(days=2)),  # beyond every row
        (NOW - timedelta(days=3, minutes=17, seconds=13.5), NOW - timedelta(days=1, minutes=-7)),
        (day - timedelta(days=7), day),  # whole days
        (day - timedelta(days=2, hours=-5), day - timedelta(days=2, hours=-6)),  # one whole hour
        (day - timedelta(hours=30, minutes=-20), day - timedelta(hours=30, minutes=-40)),  # 20 min
        (day - timedelta(days=2, hours=-10, minutes=-20), day - timedelta(hours=-11, minutes=-40)),
        (month - timedelta(seconds=1), month + timedelta(seconds=1)),  # across the month start
        (NOW - timedelta(days=400), NOW - timedelta(days=390)),  # the default partition
        (NOW - timedelta(days=500), NOW),  # default partition + every monthly one
        (NOW + timedelta(days=10), NOW + timedelta(days=11)),  # empty
        (NOW - timedelta(days=20), NOW - timedelta(days=20) + timedelta(microseconds=1)),
    ]
    rng = random.Random(13)
    for _ in range(20):
        a = NOW - timedelta(seconds=rng.uniform(0, 40 * 86400))
        b = a + timedelta(seconds=rng.uniform(1, 10 * 86400))
        fixed.append((a, b))
    return fixed


RANGES = _ranges()


def _insert(conn: psycopg.Connection, tenant: str, rows: int, lo: datetime, hi: datetime) -> None:
    """``rows`` validations of ``tenant`` at random times in [lo, hi): 5 % without a time, a
    long tail of thousands of distinct processing times, scores around both thresholds."""
    conn.execute(
        """
        INSERT INTO constitutional_validations
            (tenant_id, decision_id, compliance_score, processing_time_ms, created_at)
        SELECT %(tenant)s, 'd-' || (g %% 50),
               round((0.85 + 0.15 * random())::numeric, 4),
               CASE WHEN random() < 0.05 THEN NULL
                    WHEN random() < 0.3 THEN floor(random() * 20000)::int
                    ELSE floor(exp(3 + random() * 2))::int END,
               %(lo)s::timestamptz + random() * (%(hi)s::timestamptz - %(lo)s::timestamptz)
        FROM generate_series(1, %(rows)s) AS g
        """,
        {"tenant": tenant, "rows": rows, "lo": lo, "hi": hi},
    )


@pytest.fixture(scope="module")
def data(module_database: str) -> Iterator[dict[str, str]]:
    """Two tenants' rows over 40 days (some in the future), plus old rows in the default
    partition; nothing folded yet."""
    main, other = f"r-{uuid.uuid4().hex[:8]}", f"o-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(module_database, autocommit=True) as conn:
        for tenant, rows in ((main, 12_000), (other, 4_000)):
            _insert(conn, tenant, rows, NOW - timedelta(days=40), NOW + timedelta(hours=30))
            _insert(conn, tenant, 300, NOW - timedelta(days=400), NOW - timedelta(days=395))
        conn.execute("ANALYZE")
        default = conn.execute(
            "SELECT count(*) FROM constitutional_validations_default WHERE tenant_id = %s", (main,)
        ).fetchone()
        assert default is not None and default[0] > 0  # the default partition is in the ranges
    yield {"url": module_database, "main": main, "other": other}


def _differences(conn: psycopg.Connection, tenant: str) -> list[tuple[Any, ...]]:
    """(range, rows of the function, function EXCEPT seed, seed EXCEPT function) per range, in
    one transaction (one snapshot, one now())."""
    ours = sql.SQL("SELECT {} FROM tenant_metrics_range(%(tenant)s, %(since)s, %(until)s)").format(
        sql.SQL(_COLUMNS)
    )
    seed = _seed_range()
    out = []
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        for since, until in RANGES:
            args = {"tenant": tenant, "since": since, "until": until}
            counts = []
            for query in (
                ours,
                sql.SQL("({}) EXCEPT ({})").format(ours, seed),
                sql.SQL("({}) EXCEPT ({})").format(seed, ours),
                seed,
            ):
                count = sql.SQL("SELECT count(*) FROM ({}) AS q").format(query)
                row = conn.execute(count, args).fetchone()
                assert row is not None
                counts.append(row[0])
            out.append(((since, until), *counts))
    return out


def _check_exact(url: str, tenant: str) -> None:
    with psycopg.connect(url) as conn:
        results = _differences(conn, tenant)
    wrong = [r for r in results if r[2] != 0 or r[3] != 0 or r[1] != r[4]]
    assert wrong == []
    # Not vacuous: most ranges hold rows, the empty one holds none.
    assert sum(1 for r in results if r[1] == 1) >= len(RANGES) - 6
    assert results[10][1] == 0 and results[10][4] == 0


def test_exact_with_every_delta_pending(data: dict[str, str]) -> None:
    with psycopg.connect(data["url"]) as conn:
        pending = conn.execute(
            "SELECT count(*) FROM validation_rollup_delta WHERE tenant_id = %s", (data["main"],)
        ).fetchone()
        assert pending is not None and pending[0] > 0
    _check_exact(data["url"], data["main"])
    _check_exact(data["url"], data["other"])


def test_exact_after_fold_then_pending_inserts_updates_deletes(data: dict[str, str]) -> None:
    with psycopg.connect(data["url"], autocommit=True) as conn:
        conn.execute("SELECT fold_validation_rollup()")
        _check_exact(data["url"], data["main"])
        # New rows, updates and deletes, left pending on top of folded buckets.
        _insert(conn, data["main"], 2_000, NOW - timedelta(days=35), NOW + timedelta(hours=2))
        # Validations are append-only (migration 0010): the capture's update and delete paths
        # are exercised with that guard off for the statement's transaction.
        bypass_append_only(
            conn,
            "UPDATE constitutional_validations SET compliance_score = 0.8912,"
            " processing_time_ms = processing_time_ms + 1"
            " WHERE tenant_id = %s AND decision_id = 'd-7'",
            (data["main"],),
        )
        bypass_append_only(
            conn,
            "DELETE FROM constitutional_validations WHERE tenant_id = %s"
            " AND (decision_id = 'd-3' OR processing_time_ms IS NULL AND decision_id < 'd-2')",
            (data["main"],),
        )
        negative = conn.execute(
            "SELECT count(*) FROM validation_rollup_delta WHERE tenant_id = %s AND validations < 0",
            (data["main"],),
        ).fetchone()
        assert negative is not None and negative[0] > 0
    _check_exact(data["url"], data["main"])
    with psycopg.connect(data["url"], autocommit=True) as conn:
        conn.execute("SELECT fold_validation_rollup()")
    _check_exact(data["url"], data["main"])


# -- the repository ---------------------------------------------------------------------------


async def test_repository_range_equals_seed_and_default_is_24h(data: dict[str, str]) -> None:
    pool = await create_pool(data["url"], settings=SETTINGS, min_size=1, max_size=2)
    try:
        repo = ValidationRepository(pool, SETTINGS)
        since, until = NOW - timedelta(days=30), NOW - timedelta(minutes=3)
        got = await repo.tenant_metrics(data["main"], since, until)
        assert got is not None and got.source == "range"
        seed = _seed_row(data["url"], data["main"], since, until)
        assert (
            got.total_validations,
            got.failed_validations,
            got.constitutional_violations,
            got.avg_compliance_score,
            got.avg_processing_time_ms,
            got.p95_processing_time_ms,
            got.p99_processing_time_ms,
        ) == seed
        # until defaults to now.
        recent = await repo.tenant_metrics(data["main"], NOW - timedelta(days=2))
        assert recent is not None and recent.source == "range"
        later = NOW + timedelta(days=10)
        assert await repo.tenant_metrics(data["main"], later, later + timedelta(days=1)) is None
        # Without a range: the 24-hour figures, as before.
        default = await repo.tenant_metrics(data["main"])
        assert default is not None and default.source in ("view", "realtime")
    finally:
        await pool.close()


@pytest.mark.parametrize(
    ("since", "until", "message"),
    [
        (datetime(2026, 11, 1), None, "timezone-aware"),
        (NOW, datetime(2026, 11, 1), "timezone-aware"),
        (NOW, NOW, "before until"),
        (NOW, NOW - timedelta(seconds=1), "before until"),
        (None, NOW, "since must be"),
        ("2026-11-01", None, "since must be"),
    ],
)
async def test_repository_refuses_bad_ranges(
    repo: ValidationRepository, since: Any, until: Any, message: str
) -> None:
    with pytest.raises(AcgsDbError, match=message):
        await repo.tenant_metrics("t", since, until)


# -- tenant logins ----------------------------------------------------------------------------


async def test_tenant_login_sees_its_own_tenant_only(data: dict[str, str]) -> None:
    name = f"login_range_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(data["url"], autocommit=True) as conn:
        url = create_login(conn, name, SETTINGS.tenant_role)
    tenants.grant(data["url"], name, data["main"], SETTINGS)
    service = await create_pool(data["url"], settings=SETTINGS, min_size=1, max_size=1)
    scoped = await create_pool(url, settings=SETTINGS, min_size=1, max_size=1)
    try:
        since, until = NOW - timedelta(days=30), NOW
        mine = await ValidationRepository(scoped, SETTINGS, tenant_scoped=True).tenant_metrics(
            data["main"], since, until
        )
        expected = await ValidationRepository(service, SETTINGS).tenant_metrics(
            data["main"], since, until
        )
        assert mine is not None and expected is not None
        assert (mine.tenant_id, mine.total_validations, mine.p99_processing_time_ms) == (
            expected.tenant_id,
            expected.total_validations,
            expected.p99_processing_time_ms,
        )
        with pytest.raises(TenantScopeError):
            await ValidationRepository(scoped, SETTINGS, tenant_scoped=True).tenant_metrics(
                data["other"], since, until
            )
        async with scoped.acquire() as conn:
            rows = await conn.fetch(
                "SELECT tenant_id FROM current_tenant_metrics_range($1, $2)", since, until
            )
            assert [r[0] for r in rows] == [data["main"]]
            await conn.execute("SELECT set_config('acgs.tenant_id', $1, false)", data["other"])
            rows = await conn.fetch(
                "SELECT tenant_id FROM current_tenant_metrics_range($1, $2)", since, until
            )
            assert [r[0] for r in rows] == [data["main"]]
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.fetch(
                    "SELECT * FROM tenant_metrics_range($1, $2, $3)", data["other"], since, until
                )
    finally:
        await scoped.close()
        await service.close()
        tenants.revoke(data["url"], name, SETTINGS)
        with psycopg.connect(data["url"], autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def test_privileges_of_the_new_functions(data: dict[str, str]) -> None:
    check = "SELECT has_function_privilege(%s, %s, 'EXECUTE')"
    cases = {
        ("public", "tenant_metrics_range(varchar, timestamptz, timestamptz)"): False,
        ("public", "current_tenant_metrics_range(timestamptz, timestamptz)"): False,
        (SETTINGS.tenant_role, "tenant_metrics_range(varchar, timestamptz, timestamptz)"): False,
        (SETTINGS.tenant_role, "current_tenant_metrics_range(timestamptz, timestamptz)"): True,
        (SETTINGS.reader_role, "tenant_metrics_range(varchar, timestamptz, timestamptz)"): True,
        (SETTINGS.writer_role, "tenant_metrics_range(varchar, timestamptz, timestamptz)"): True,
        # The session-planned wrappers (migration 0015): as the functions they call.
        ("public", "tenant_metrics_range_planned(varchar, timestamptz, timestamptz)"): False,
        ("public", "tenant_metrics_24h_planned(varchar)"): False,
        (SETTINGS.tenant_role, "tenant_metrics_24h_planned(varchar)"): False,
        (SETTINGS.reader_role, "tenant_metrics_24h_planned(varchar)"): True,
        # tenant_metrics_24h() at a given time (migration 0017): as tenant_metrics_24h().
        ("public", "tenant_metrics_24h_at(varchar, timestamptz)"): False,
        (SETTINGS.tenant_role, "tenant_metrics_24h_at(varchar, timestamptz)"): False,
        (SETTINGS.reader_role, "tenant_metrics_24h_at(varchar, timestamptz)"): True,
        (SETTINGS.writer_role, "tenant_metrics_24h_at(varchar, timestamptz)"): True,
        (
            SETTINGS.writer_role,
            "tenant_metrics_range_planned(varchar, timestamptz, timestamptz)",
        ): True,
    }
    with psycopg.connect(data["url"]) as conn:
        got = {}
        for role, fn in cases:
            row = conn.execute(check, (role, fn)).fetchone()
            assert row is not None
            got[(role, fn)] = row[0]
        assert got == cases
        row = conn.execute(
            "SELECT p.prosecdef, p.proconfig, r.rolname FROM pg_proc p"
            " JOIN pg_roles r ON r.oid = p.proowner"
            " WHERE p.proname = 'current_tenant_metrics_range'"
        ).fetchone()
        assert row is not None and row[0] is True and row[2] == SETTINGS.owner_role
        assert any(c.startswith("search_path=") for c in row[1])
        for wrapper in ("tenant_metrics_24h_planned", "tenant_metrics_range_planned"):
            row = conn.execute(
                "SELECT p.prosecdef, p.proconfig FROM pg_proc p WHERE p.proname = %s", (wrapper,)
            ).fetchone()
            assert row is not None and row[0] is False
            assert "plan_cache_mode=force_generic_plan" in row[1]
            assert any(c.startswith("search_path=") for c in row[1])


# -- plans ------------------------------------------------------------------------------------


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def test_generic_plan_uses_the_rollup_key_and_the_tenant_time_index(data: dict[str, str]) -> None:
    with psycopg.connect(data["url"], autocommit=True, cursor_factory=psycopg.ClientCursor) as conn:
        # The plan of a folded store (run alone, this test would otherwise plan on an empty
        # rollup: the module's fixture folds nothing).
        conn.execute("SELECT fold_validation_rollup()")
        conn.execute("ANALYZE")
        conn.execute("SET plan_cache_mode = force_generic_plan")
        # What tenant_metrics_range_planned() (sql/queries/metrics_range.sql) runs.
        conn.execute(
            "PREPARE range_plan (varchar, timestamptz, timestamptz) AS"
            " SELECT * FROM tenant_metrics_range($1, $2, $3)"
        )
        row = conn.execute(
            "EXPLAIN (FORMAT JSON) EXECUTE range_plan (%s, %s, %s)",
            (data["main"], NOW - timedelta(days=30), NOW),
        ).fetchone()
        assert row is not None
        nodes = list(_nodes(row[0][0]["Plan"]))
        indexes = {(n.get("Relation Name", ""), n.get("Index Name", "")) for n in nodes}
        parents = set()
        for relation, index in indexes:
            if relation.startswith("constitutional_validations") and index:
                found = conn.execute(
                    "SELECT p.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                    " JOIN pg_class p ON p.oid = i.inhparent WHERE c.relname = %s",
                    (index,),
                ).fetchone()
                parents.add(found[0] if found else index)
        assert ("validation_rollup", "validation_rollup_key") in indexes
        assert parents == {"idx_constitutional_validations_tenant_hash_time"}
        # v3 (migration 0016): the ranks are placed in the coarse day bins, then the day bins
        # of the chosen coarse bins are read bin by bin.
        assert ("rollup_bins_day_coarse", "rollup_bins_day_coarse_pkey") in indexes
        assert ("rollup_bins_day", "rollup_bins_day_by_bin") in indexes
        by_bin = [
            n.get("Index Cond", "")
            for n in nodes
            if n.get("Index Name") == "rollup_bins_day_by_bin"
        ]
        # v4 (migration 0018): each chosen bin's day bins over every day (how many rows the
        # retention holds of it, to choose how its values are read), and the values hour by
        # hour by the rollup's key (edge hours always; every hour when that reads less).
        retention = [c for c in by_bin if "(bin = target_bins.bin)" in c and "day" not in c]
        assert len(retention) == 1
        assert all(
            "(bin = ((target_coarse.coarse << 3)" in c and "(day >= " in c and "(day < " in c
            for c in by_bin
            if c not in retention
        ), by_bin
        hour_by_hour = [
            n.get("Index Cond", "")
            for n in nodes
            if n.get("Index Name") == "validation_rollup_key"
            and "(bucket = h" in n.get("Index Cond", "")
        ]
        assert len(hour_by_hour) == 2, hour_by_hour
        with_rows = {
            r[0]
            for r in conn.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                " WHERE i.inhparent = 'constitutional_validations'::regclass"
                " AND c.reltuples > 0"
            ).fetchall()
        }
        assert len(with_rows) >= 3
        # No partition holding rows and not the rollup is read by a sequential scan (empty
        # premade partitions may be: a seq scan of an empty table reads nothing).
        scans = [
            (n["Relation Name"])
            for n in nodes
            if n["Node Type"] == "Seq Scan"
            and n.get("Relation Name")
            in with_rows | {"validation_rollup", "rollup_bins_day", "rollup_bins_day_coarse"}
        ]
        assert scans == []
        conn.execute("DEALLOCATE range_plan")


def test_generic_plan_of_the_24_hour_figures_reads_hour_bins_then_the_chosen_bins_hour_by_hour(
    migrated_database: str,
) -> None:
    """tenant_metrics_24h() v6 (migration 0018), over 40 tenants with a long tail of times in
    their window, folded: the bins of the window by the bins' key, the values of the chosen bins
    by the rollup's key one hour at a time (bucket = ...), never by validation_rollup_value,
    whose value ranges hold every bucket of the retention; v3's per-value pass (the window's
    rollup rows by validation_rollup_key) sits behind the checks."""
    url = migrated_database
    with psycopg.connect(url, autocommit=True, cursor_factory=psycopg.ClientCursor) as conn:
        conn.execute(
            """
            INSERT INTO constitutional_validations
                (tenant_id, decision_id, compliance_score, processing_time_ms, created_at)
            SELECT 'p-' || mod(i, 40), 'd', 0.97, (exp(random() * 11))::int,
                   now() - mod(i, 86000) * interval '1 second'
            FROM generate_series(1, 60000) AS i
            """
        )
        conn.execute("SELECT fold_validation_rollup()")
        conn.execute("ANALYZE")
        conn.execute("SET plan_cache_mode = force_generic_plan")
        # What tenant_metrics_24h_planned() (sql/queries/metrics_realtime.sql) runs.
        conn.execute("PREPARE realtime_plan (varchar) AS SELECT * FROM tenant_metrics_24h($1)")
        row = conn.execute("EXPLAIN (FORMAT JSON) EXECUTE realtime_plan ('p-7')").fetchone()
        assert row is not None
        nodes = list(_nodes(row[0][0]["Plan"]))
        # Index (only) scans, or bitmap index scans under a bitmap heap scan.
        indexes = {n["Index Name"] for n in nodes if "Index Name" in n}
        assert indexes >= {
            "rollup_bins_hour_pkey",
            "validation_rollup_key",
            "rollup_totals_hour_pkey",
        }
        assert "validation_rollup_value" not in indexes
        hour_by_hour = [
            n
            for n in nodes
            if n.get("Index Name") == "validation_rollup_key"
            and "(bucket = " in n.get("Index Cond", "")
            and "processing_time_ms >= " in n.get("Index Cond", "")
        ]
        assert len(hour_by_hour) == 1
        scans = [
            n["Relation Name"]
            for n in nodes
            if n["Node Type"] == "Seq Scan"
            and n.get("Relation Name")
            in {"validation_rollup", "rollup_bins_hour", "rollup_totals_hour"}
        ]
        assert scans == []
        # The session-planned wrappers never compile the plan (migration 0018).
        settings = conn.execute(
            "SELECT p.proname, p.proconfig FROM pg_proc p"
            " WHERE p.proname IN ('tenant_metrics_24h_planned', 'tenant_metrics_range_planned')"
        ).fetchall()
        assert len(settings) == 2
        assert all("jit=off" in config for _, config in settings)
        conn.execute("DEALLOCATE realtime_plan")


def _rollup_pages(conn: psycopg.Connection, execute: str, args: tuple[Any, ...]) -> int:
    """Shared pages the rollup's nodes touched in one generic-plan run of ``execute``."""
    row = conn.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {execute}", args).fetchone()
    assert row is not None
    return sum(
        n["Shared Hit Blocks"] + n["Shared Read Blocks"]
        for n in _nodes(row[0][0]["Plan"])
        if n.get("Relation Name") == "validation_rollup"
    )


def test_the_figures_read_the_same_rollup_pages_whatever_the_history(
    migrated_database: str,
) -> None:
    """Two tenants with the same rows in their window, one of them with 20 days of history
    behind it: the 24-hour figures (v6, migration 0018) and the figures over an 18-hour range
    (v4) read as many rollup pages for both (the cost follows the window, not the retention),
    and give the same answers. A thousand distinct times a day in two bins, so that the bins
    holding the percentiles hold many values every day."""
    window = """
        INSERT INTO constitutional_validations
            (tenant_id, decision_id, compliance_score, processing_time_ms, created_at)
        SELECT %(tenant)s, 'd', 0.97, 20000 + mod(i * 7919, 1000),
               now() - interval '1 minute' - mod(i * 37, 86000) * interval '1 second'
              - %(days)s::int * interval '1 day'
        FROM generate_series(1, 3000) AS i
        """
    with psycopg.connect(
        migrated_database, autocommit=True, cursor_factory=psycopg.ClientCursor
    ) as conn:
        conn.execute(
            """
            INSERT INTO constitutional_validations
                (tenant_id, decision_id, compliance_score, processing_time_ms, created_at)
            SELECT 'p-' || mod(i, 40), 'd', 0.97, (exp(random() * 11))::int,
                   now() - mod(i, 86000) * interval '1 second'
            FROM generate_series(1, 60000) AS i
            """
        )  # 40 other tenants: the generic plan's estimates of one tenant are small
        for tenant in ("fresh", "aged"):
            conn.execute(window, {"tenant": tenant, "days": 0})
        for day in range(1, 21):
            conn.execute(window, {"tenant": "aged", "days": day})
        conn.execute("SELECT fold_validation_rollup()")
        conn.execute("VACUUM ANALYZE")  # index-only scans: the pages read are the index's
        conn.execute("SET plan_cache_mode = force_generic_plan")
        conn.execute("PREPARE realtime_plan (varchar) AS SELECT * FROM tenant_metrics_24h($1)")
        answers = [
            conn.execute(
                "SELECT total_validations, p95_processing_time_ms, p99_processing_time_ms"
                " FROM tenant_metrics_24h(%s)",
                (tenant,),
            ).fetchone()
            for tenant in ("fresh", "aged")
        ]
        assert answers[0] == answers[1] and answers[0] is not None and answers[0][0] == 3000
        realtime = "EXECUTE realtime_plan (%s)"
        fresh, aged = (
            _rollup_pages(conn, realtime, ("fresh",)),
            _rollup_pages(conn, realtime, ("aged",)),
        )
        assert fresh > 0
        assert aged <= fresh * 1.2 + 4
        conn.execute(
            "PREPARE range_plan (varchar, timestamptz, timestamptz) AS"
            " SELECT * FROM tenant_metrics_range($1, $2, $3)"
        )
        now = conn.execute("SELECT now()").fetchone()
        assert now is not None
        since, until = now[0] - timedelta(hours=20), now[0] - timedelta(hours=2)
        ranged = [
            conn.execute(
                "SELECT total_validations, p95_processing_time_ms, p99_processing_time_ms"
                " FROM tenant_metrics_range(%s, %s, %s)",
                (tenant, since, until),
            ).fetchone()
            for tenant in ("fresh", "aged")
        ]
        assert ranged[0] == ranged[1] and ranged[0] is not None and ranged[0][0] > 2000
        execute = "EXECUTE range_plan (%s, %s, %s)"
        fresh = _rollup_pages(conn, execute, ("fresh", since, until))
        aged = _rollup_pages(conn, execute, ("aged", since, until))
        assert fresh > 0
        assert aged <= fresh * 1.2 + 4


# -- the command ------------------------------------------------------------------------------


def _cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACGS_")}
    return subprocess.run(
        [sys.executable, "-m", "acgs_db", *args],
        env={**env, "ACGS_DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_metrics_over_a_range(data: dict[str, str]) -> None:
    since, until = NOW - timedelta(days=7), NOW - timedelta(hours=1)
    done = _cli(
        data["url"],
        "metrics",
        data["main"],
        "--since",
        since.isoformat(),
        "--until",
        until.isoformat(),
        "--json",
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    seed = _seed_row(data["url"], data["main"], since, until)
    assert (figures["total_validations"], figures["p99_processing_time_ms"]) == (seed[0], seed[6])
    assert figures["source"] == "range"
    text = _cli(data["url"], "metrics", data["main"], "--since", "7d")
    assert text.returncode == 0, text.stderr
    assert "source: range" in text.stdout.splitlines()
    assert any(line.startswith("total_validations: ") for line in text.stdout.splitlines())
    bad = _cli(data["url"], "metrics", data["main"], "--since", "2026-11-01T00:00:00")
    assert bad.returncode == 1
    assert bad.stderr.startswith("error: --since must carry a UTC offset")
    empty = _cli(
        data["url"],
        "metrics",
        data["main"],
        "--since",
        "2099-01-01T00:00:00Z",
        "--until",
        "2099-01-02T00:00:00Z",
    )
    assert empty.returncode == 0 and empty.stdout.startswith("no validations")


# -- the structures the fold keeps (rollup_totals_hour, rollup_bins_day, rollup_bins_hour) -----

_TOTALS_FROM_ROLLUP = """
    SELECT tenant_id, bucket, sum(validations) AS total,
           coalesce(sum(validations) FILTER (WHERE processing_time_ms IS NOT NULL), 0) AS timed,
           coalesce(sum(processing_time_ms::numeric * validations), 0) AS time_sum,
           sum(score_sum) AS score_sum, sum(below_95) AS below_95, sum(below_90) AS below_90
    FROM validation_rollup GROUP BY tenant_id, bucket HAVING sum(validations) <> 0
"""
_TOTALS = """
    SELECT tenant_id, bucket, total::numeric, timed::numeric, time_sum, score_sum,
           below_95::numeric, below_90::numeric
    FROM rollup_totals_hour WHERE total <> 0
"""
_BINS_FROM_ROLLUP = """
    SELECT tenant_id, date_bin(interval '1 day', bucket, timestamptz '2000-01-01 00:00:00+00'),
           rollup_bin(processing_time_ms), sum(validations)
    FROM validation_rollup WHERE processing_time_ms IS NOT NULL
    GROUP BY 1, 2, 3 HAVING sum(validations) <> 0
"""
_BINS = "SELECT tenant_id, day, bin, n::numeric FROM rollup_bins_day WHERE n <> 0"
_HOUR_BINS_FROM_ROLLUP = """
    SELECT tenant_id, bucket, rollup_hour_bin(processing_time_ms), sum(validations)
    FROM validation_rollup WHERE processing_time_ms IS NOT NULL
    GROUP BY 1, 2, 3 HAVING sum(validations) <> 0
"""
_HOUR_BINS = "SELECT tenant_id, bucket, bin, n::numeric FROM rollup_bins_hour WHERE n <> 0"


def _structures_agree(conn: psycopg.Connection) -> bool:
    """The totals, the day bins and the hour bins are exactly the rollup's, summed (both
    ways)."""
    counts = []
    for left, right in (
        (_TOTALS_FROM_ROLLUP, _TOTALS),
        (_TOTALS, _TOTALS_FROM_ROLLUP),
        (_BINS_FROM_ROLLUP, _BINS),
        (_BINS, _BINS_FROM_ROLLUP),
        (_HOUR_BINS_FROM_ROLLUP, _HOUR_BINS),
        (_HOUR_BINS, _HOUR_BINS_FROM_ROLLUP),
    ):
        query = sql.SQL("SELECT count(*) FROM (({}) EXCEPT ({})) AS d").format(
            sql.SQL(left), sql.SQL(right)
        )
        row = conn.execute(query).fetchone()
        assert row is not None
        counts.append(row[0])
    return counts == [0, 0, 0, 0, 0, 0]


def test_the_fold_keeps_totals_and_bins_equal_to_the_rollup(data: dict[str, str]) -> None:
    with psycopg.connect(data["url"], autocommit=True) as conn:
        conn.execute("SELECT fold_validation_rollup()")
        assert _structures_agree(conn)
        _insert(conn, data["other"], 500, NOW - timedelta(days=3), NOW)
        bypass_append_only(
            conn,
            "DELETE FROM constitutional_validations WHERE tenant_id = %s AND decision_id = 'd-9'",
            (data["other"],),
        )
        conn.execute("SELECT fold_validation_rollup()")
        assert _structures_agree(conn)
        row = conn.execute(
            "SELECT (SELECT count(*) FROM rollup_bins_day), (SELECT count(*) FROM rollup_bins_hour)"
        ).fetchone()
        assert row is not None and row[0] > 0 and row[1] > 0


def test_bin_bounds(data: dict[str, str]) -> None:
    with psycopg.connect(data["url"]) as conn:
        row = conn.execute(
            """
            SELECT count(*) FILTER (WHERE NOT (rollup_bin_lo(rollup_bin(v)) <= v
                                         AND v < rollup_bin_lo(rollup_bin(v) + 1))),
                   count(*) FILTER (WHERE rollup_bin(v) < rollup_bin(v - 1)),
                   count(*) FILTER (WHERE v >= 256 AND (rollup_bin_lo(rollup_bin(v) + 1)
                                    - rollup_bin_lo(rollup_bin(v))) * 32 > v)
            FROM (SELECT generate_series(1, 300000) AS v
                  UNION ALL SELECT 2147483647 - g FROM generate_series(0, 1000) AS g) AS s
            """
        ).fetchone()
    assert row == (0, 0, 0)


def test_retention_takes_the_dropped_buckets_out_of_totals_and_bins(
    migrated_database: str,
) -> None:
    with psycopg.connect(migrated_database, autocommit=True) as conn:
        start = oldest_partition_start(conn)
        _insert(conn, "old", 200, start + timedelta(days=1), start + timedelta(days=3))
        _insert(conn, "new", 200, NOW - timedelta(days=1), NOW)
        conn.execute("SELECT fold_validation_rollup()")
        assert _structures_agree(conn)
        conn.execute(
            "UPDATE partman.part_config SET retention = '2 months'"
            " WHERE parent_table = 'public.constitutional_validations'"
        )
        conn.execute("CALL partman.run_maintenance_proc()")
        conn.execute("SELECT fold_validation_rollup()")
        assert _structures_agree(conn)
        row = conn.execute(
            "SELECT count(*) FROM tenant_metrics_range('old', %s, %s)",
            (start - timedelta(days=40), NOW),
        ).fetchone()
        assert row == (0,)
        mine = conn.execute(
            "SELECT total_validations FROM tenant_metrics_range('new', %s, %s)",
            (start - timedelta(days=40), NOW + timedelta(days=1)),
        ).fetchone()
        assert mine == (200,)


def test_exact_while_the_refresh_leaves_older_deltas_to_slices(data: dict[str, str]) -> None:
    """Deferred folds (migration 0014): the refresh folds the window's deltas only; ranged
    figures read the backlog's pending deltas meanwhile, and stay exact as slices fold it."""
    with psycopg.connect(data["url"], autocommit=True) as conn:
        # Fresh writes over 40 days: the refresh will leave most of them pending.
        _insert(conn, data["main"], 3_000, NOW - timedelta(days=38), NOW + timedelta(hours=1))
        conn.execute("SELECT refresh_tenant_metrics_24h()")
        with conn.transaction():
            window = conn.execute(
                "SELECT count(*) FROM validation_rollup_delta WHERE bucket >= rollup_window_line()"
            ).fetchone()
            backlog = conn.execute("SELECT delta_rows, buckets FROM rollup_backlog()").fetchone()
        assert window == (0,)
        assert backlog is not None and backlog[0] > 1_000 and backlog[1] > 100
    _check_exact(data["url"], data["main"])
    _check_exact(data["url"], data["other"])
    with psycopg.connect(data["url"], autocommit=True) as conn:
        for _ in range(10):  # a part of the backlog: 10 slices of 24 hours
            assert conn.execute("SELECT fold_rollup_backlog(24)").fetchone() != (0,)
            assert _structures_agree(conn)
        left = conn.execute("SELECT delta_rows FROM rollup_backlog()").fetchone()
        assert left is not None and 0 < left[0] < backlog[0]
    _check_exact(data["url"], data["main"])
    with psycopg.connect(data["url"], autocommit=True) as conn:
        while conn.execute("SELECT fold_rollup_backlog(24)").fetchone() != (0,):
            pass
        assert conn.execute("SELECT delta_rows FROM rollup_backlog()").fetchone() == (0,)
        assert _structures_agree(conn)
    _check_exact(data["url"], data["main"])
    _check_exact(data["url"], data["other"])
