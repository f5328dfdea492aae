"""The incremental rollup keeps the 24-hour figures exact: the view built from the rollup equals
the seed's SQL evaluated on the raw rows, whatever the writes, the late rows and the folds; and
so do the ranged figures (tenant_metrics_range(), which also reads the hourly totals and day
bins the fold keeps) over the seed's SQL restricted to the same range."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from conftest import bypass_append_only, empty_store, oldest_partition_start
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.sql import SQL

from acgs_db.resources import load_sql

SEED_SQL = load_sql("schema/seed_metrics_24h")
VIEW_COLUMNS = (
    "tenant_id, constitutional_hash, avg_compliance_score, total_validations, failed_validations,"
    " avg_processing_time_ms, p95_processing_time_ms, p99_processing_time_ms,"
    " constitutional_violations, last_updated"
)
# The rollup plus the pending deltas, against the raw rows counted the same way.
ROLLUP_MINUS_RAW = """
WITH kept AS (
    SELECT tenant_id, bucket, processing_time_ms, sum(validations) AS n, sum(score_sum) AS s,
           sum(below_95) AS b95, sum(below_90) AS b90
    FROM (SELECT tenant_id, bucket, processing_time_ms, validations, score_sum, below_95, below_90
          FROM validation_rollup
          UNION ALL
          SELECT tenant_id, bucket, processing_time_ms, validations, score_sum, below_95, below_90
          FROM validation_rollup_delta) AS both_
    GROUP BY 1, 2, 3
    HAVING sum(validations) <> 0
), raw AS (
    SELECT tenant_id, rollup_bucket(created_at) AS bucket, processing_time_ms, count(*) AS n,
           sum(compliance_score) AS s, count(*) FILTER (WHERE compliance_score < 0.95) AS b95,
           count(*) FILTER (WHERE compliance_score < 0.90) AS b90
    FROM constitutional_validations
    GROUP BY 1, 2, 3
)
SELECT count(*) FROM ((TABLE kept EXCEPT TABLE raw) UNION ALL (TABLE raw EXCEPT TABLE kept)) AS d
"""


@pytest.fixture(scope="module")
def rollup_db(module_database: str) -> str:
    """A database of its own: these tests empty the tables between examples."""
    return module_database


def _reset(conn: psycopg.Connection) -> None:
    empty_store(conn)


# The view (and the per-tenant function) against the seed's SQL, both ways.
DIFFERENCE = SQL("SELECT count(*) FROM (({left}) EXCEPT ({right})) AS d")
PER_TENANT = SQL(
    "SELECT m.* FROM (SELECT DISTINCT tenant_id FROM constitutional_validations) AS t,"
    " tenant_metrics_24h(t.tenant_id) AS m"
)
VIEW = SQL("SELECT {columns} FROM tenant_constitutional_metrics_24h").format(
    columns=SQL(VIEW_COLUMNS)
)


def _view_equals_seed(conn: psycopg.Connection) -> tuple[int, ...]:
    """Refresh, then compare in the same transaction (same now()) both ways; also per tenant."""
    seed = SQL(SEED_SQL)  # a constant loaded from sql/schema
    counts = []
    with conn.transaction():
        conn.execute("SELECT refresh_tenant_metrics_24h()")
        for left, right in ((VIEW, seed), (seed, VIEW), (PER_TENANT, seed), (seed, PER_TENANT)):
            row = conn.execute(DIFFERENCE.format(left=left, right=right)).fetchone()
            assert row is not None
            counts.append(row[0])
    return tuple(counts)


# Ranged figures (migration 0011) of every tenant against the seed's SQL over the same range.
SEED_RANGE = SEED_SQL.replace(
    "WHERE created_at >= NOW() - INTERVAL '24 hours'",
    "WHERE created_at >= %(lo)s AND created_at < %(hi)s",
)
PER_TENANT_RANGE = SQL(
    "SELECT m.* FROM (SELECT DISTINCT tenant_id FROM constitutional_validations) AS t,"
    " tenant_metrics_range(t.tenant_id, %(lo)s, %(hi)s) AS m"
)
RANGES = (
    (timedelta(days=41), timedelta(days=-1)),  # every row: whole days, hours and edges
    (timedelta(days=3, minutes=17, seconds=3), timedelta(hours=2, minutes=-7)),
    (timedelta(hours=25, minutes=10), timedelta(minutes=-5)),
)


def _ranges_equal_seed(conn: psycopg.Connection) -> tuple[int, ...]:
    """tenant_metrics_range() EXCEPT the seed's SQL over the same range, both ways, per range,
    in one transaction (pending deltas included: no fold here)."""
    assert SEED_RANGE != SEED_SQL
    seed = SQL(SEED_RANGE)  # a constant derived from sql/schema
    counts = []
    with conn.transaction():
        now = conn.execute("SELECT now()").fetchone()
        assert now is not None
        for back, ahead in RANGES:
            args = {"lo": now[0] - back, "hi": now[0] - ahead}
            for left, right in ((PER_TENANT_RANGE, seed), (seed, PER_TENANT_RANGE)):
                row = conn.execute(DIFFERENCE.format(left=left, right=right), args).fetchone()
                assert row is not None
                counts.append(row[0])
    return tuple(counts)


# tenant_metrics_24h_at(tenant, at) (migration 0017) at chosen minutes of the current hour: on
# the boundary, before the half hour (the edge bucket counted whole, minus its raw rows before
# the window) and after it (the raw rows of the window's part of the bucket).
PER_TENANT_AT = SQL(
    "SELECT m.* FROM (SELECT DISTINCT tenant_id FROM constitutional_validations) AS t,"
    " tenant_metrics_24h_at(t.tenant_id, %(at)s) AS m"
)
EDGE_MINUTES = (timedelta(0), timedelta(minutes=17, seconds=3), timedelta(minutes=43))


def _edges_equal_seed(conn: psycopg.Connection) -> tuple[int, ...]:
    """tenant_metrics_24h_at() EXCEPT the seed's SQL over [at - 24 hours, infinity), both ways,
    per minute, in one transaction."""
    seed = SQL(SEED_RANGE)  # a constant derived from sql/schema
    counts = []
    with conn.transaction():
        hour = conn.execute("SELECT rollup_bucket(now())").fetchone()
        assert hour is not None
        for minute in EDGE_MINUTES:
            at = hour[0] + minute
            args = {"at": at, "lo": at - timedelta(hours=24), "hi": "infinity"}
            for left, right in ((PER_TENANT_AT, seed), (seed, PER_TENANT_AT)):
                row = conn.execute(DIFFERENCE.format(left=left, right=right), args).fetchone()
                assert row is not None
                counts.append(row[0])
    return tuple(counts)


def _invariant_holds(conn: psycopg.Connection) -> bool:
    row = conn.execute(ROLLUP_MINUS_RAW).fetchone()
    return row is not None and row[0] == 0


# rollup_totals_hour, rollup_bins_day (migration 0011), rollup_bins_hour (0015) and
# rollup_bins_day_coarse (0016) are the rollup's sums, both ways.
STRUCTURES_MINUS_ROLLUP = """
WITH totals AS (
    SELECT tenant_id, bucket, total::numeric, timed::numeric, time_sum, score_sum,
           below_95::numeric, below_90::numeric
    FROM rollup_totals_hour WHERE total <> 0
), totals_of_rollup AS (
    SELECT tenant_id, bucket, sum(validations),
           coalesce(sum(validations) FILTER (WHERE processing_time_ms IS NOT NULL), 0),
           coalesce(sum(processing_time_ms::numeric * validations), 0), sum(score_sum),
           sum(below_95), sum(below_90)
    FROM validation_rollup GROUP BY 1, 2 HAVING sum(validations) <> 0
), bins AS (
    SELECT tenant_id, day, bin, n::numeric FROM rollup_bins_day WHERE n <> 0
), bins_of_rollup AS (
    SELECT tenant_id, date_bin(interval '1 day', bucket, timestamptz '2000-01-01 00:00:00+00'),
           rollup_bin(processing_time_ms), sum(validations)
    FROM validation_rollup WHERE processing_time_ms IS NOT NULL
    GROUP BY 1, 2, 3 HAVING sum(validations) <> 0
), hour_bins AS (
    SELECT tenant_id, bucket, bin, n::numeric FROM rollup_bins_hour WHERE n <> 0
), hour_bins_of_rollup AS (
    SELECT tenant_id, bucket, rollup_hour_bin(processing_time_ms), sum(validations)
    FROM validation_rollup WHERE processing_time_ms IS NOT NULL
    GROUP BY 1, 2, 3 HAVING sum(validations) <> 0
), day_coarse AS (
    SELECT tenant_id, day, bin, n::numeric FROM rollup_bins_day_coarse WHERE n <> 0
), day_coarse_of_rollup AS (
    SELECT tenant_id, date_bin(interval '1 day', bucket, timestamptz '2000-01-01 00:00:00+00'),
           rollup_hour_bin(processing_time_ms), sum(validations)
    FROM validation_rollup WHERE processing_time_ms IS NOT NULL
    GROUP BY 1, 2, 3 HAVING sum(validations) <> 0
)
SELECT (SELECT count(*) FROM (TABLE totals EXCEPT TABLE totals_of_rollup) AS a)
     + (SELECT count(*) FROM (TABLE totals_of_rollup EXCEPT TABLE totals) AS b)
     + (SELECT count(*) FROM (TABLE bins EXCEPT TABLE bins_of_rollup) AS c)
     + (SELECT count(*) FROM (TABLE bins_of_rollup EXCEPT TABLE bins) AS d)
     + (SELECT count(*) FROM (TABLE hour_bins EXCEPT TABLE hour_bins_of_rollup) AS e)
     + (SELECT count(*) FROM (TABLE hour_bins_of_rollup EXCEPT TABLE hour_bins) AS f)
     + (SELECT count(*) FROM (TABLE day_coarse EXCEPT TABLE day_coarse_of_rollup) AS g)
     + (SELECT count(*) FROM (TABLE day_coarse_of_rollup EXCEPT TABLE day_coarse) AS h)
"""


def _structures_agree(conn: psycopg.Connection) -> bool:
    row = conn.execute(STRUCTURES_MINUS_ROLLUP).fetchone()
    return row is not None and row[0] == 0


def _window_pending(conn: psycopg.Connection) -> int:
    """Pending deltas of the buckets the refresh folds (from rollup_window_line() on)."""
    row = conn.execute(
        "SELECT count(*) FROM validation_rollup_delta WHERE bucket >= rollup_window_line()"
    ).fetchone()
    assert row is not None
    return int(row[0])


def _backlog(conn: psycopg.Connection) -> tuple[int, int, datetime | None]:
    """rollup_backlog(), checked against the pending deltas below the line counted directly."""
    row = conn.execute("SELECT delta_rows, buckets, oldest_bucket FROM rollup_backlog()").fetchone()
    direct = conn.execute(
        "SELECT count(*), count(DISTINCT bucket), min(bucket) FROM validation_rollup_delta"
        " WHERE bucket < rollup_window_line()"
    ).fetchone()
    assert row is not None and row == direct
    return int(row[0]), int(row[1]), row[2]


def _fold_one_slice(conn: psycopg.Connection, buckets: int) -> int:
    """One backlog slice: it folds exactly the deltas of the `buckets` hours from the oldest
    pending bucket below the line (and nothing of the window), and returns their count."""
    with conn.transaction():
        line = conn.execute("SELECT rollup_window_line()").fetchone()
        assert line is not None
        rows, _, oldest = _backlog(conn)
        expected = 0
        if oldest is not None:
            upto = min(oldest + timedelta(hours=buckets), line[0])
            row = conn.execute(
                "SELECT count(*) FROM validation_rollup_delta WHERE bucket >= %s AND bucket < %s",
                (oldest, upto),
            ).fetchone()
            assert row is not None
            expected = int(row[0])
        window_before = _window_pending(conn)
        folded = conn.execute("SELECT fold_rollup_backlog(%s)", (buckets,)).fetchone()
        assert folded == (expected,)
        assert _window_pending(conn) == window_before
        assert _backlog(conn)[0] == rows - expected
    return expected


# -- hypothesis: random writes, late rows, deletes, folds and refreshes ---------------------

scores = st.one_of(
    st.sampled_from(
        [Decimal("0"), Decimal("1"), Decimal("0.95"), Decimal("0.9"), Decimal("0.8999")]
    ),
    st.integers(0, 10_000).map(lambda n: Decimal(n) / 10_000),
)
times = st.one_of(
    st.none(),
    st.integers(0, 50),
    st.integers(0, 5_000_000),  # long tail
)
# Seconds before now: inside the window, at its edge, late (days back), slightly in the future.
ages = st.one_of(
    st.integers(0, 86_399),
    st.integers(86_390, 86_410),
    st.integers(86_400, 40 * 86_400),
    st.integers(-240, 0),
)
rows = st.tuples(st.sampled_from(["t-a", "t-b", "t-c", "t-d"]), scores, times, ages)
actions = st.lists(
    st.one_of(
        st.tuples(st.just("copy"), st.lists(rows, min_size=1, max_size=60)),
        st.tuples(st.just("insert"), st.lists(rows, min_size=1, max_size=5)),
        st.tuples(st.just("delete"), st.sampled_from(["t-a", "t-b", "t-c", "t-d"])),
        st.tuples(st.just("fold"), st.none()),
        st.tuples(st.just("refresh"), st.none()),
        st.tuples(st.just("slice"), st.integers(1, 30)),
        st.tuples(st.just("check"), st.none()),
    ),
    min_size=1,
    max_size=12,
)


def _write(
    conn: psycopg.Connection, kind: str, batch: list[tuple[str, Decimal, int | None, int]]
) -> None:
    now = conn.execute("SELECT now()").fetchone()
    assert now is not None
    values = [
        (tenant, f"d-{i}", score, took, now[0] - timedelta(seconds=age))
        for i, (tenant, score, took, age) in enumerate(batch)
    ]
    if kind == "copy":
        with conn.cursor().copy(
            "COPY constitutional_validations (tenant_id, decision_id, compliance_score,"
            " processing_time_ms, created_at) FROM STDIN"
        ) as copy:
            for value in values:
                copy.write_row(value)
    else:
        conn.cursor().executemany(
            "INSERT INTO constitutional_validations (tenant_id, decision_id, compliance_score,"
            " processing_time_ms, created_at) VALUES (%s, %s, %s, %s, %s)",
            values,
        )


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(script=actions)
def test_view_equals_the_seed_sql_after_any_interleaving(
    rollup_db: str, script: list[tuple[str, object]]
) -> None:
    with psycopg.connect(rollup_db, autocommit=True) as conn:
        _reset(conn)
        for kind, argument in script:
            if kind in ("copy", "insert"):
                assert isinstance(argument, list)
                _write(conn, kind, argument)
            elif kind == "delete":
                # Validations are append-only (migration 0010); the capture's delete path,
                # which the fold's counts rely on, is still exercised with the guard lifted.
                bypass_append_only(
                    conn,
                    "DELETE FROM constitutional_validations"
                    " WHERE tenant_id = %s AND mod(id, 2) = 0",
                    (argument,),
                )
            elif kind == "fold":
                conn.execute("SELECT fold_validation_rollup()")
            elif kind == "refresh":
                # Folds the window's deltas only: older ones stay pending (the backlog).
                with conn.transaction():
                    conn.execute("SELECT refresh_tenant_metrics_24h()")
                    assert _window_pending(conn) == 0
            elif kind == "slice":
                _fold_one_slice(conn, argument)  # type: ignore[arg-type]
            else:
                assert _ranges_equal_seed(conn) == (0,) * 6
                assert _view_equals_seed(conn) == (0, 0, 0, 0)
            assert _invariant_holds(conn)
            assert _structures_agree(conn)
        assert _ranges_equal_seed(conn) == (0,) * 6
        assert _view_equals_seed(conn) == (0, 0, 0, 0)
        assert _ranges_equal_seed(conn) == (0,) * 6
        assert _edges_equal_seed(conn) == (0,) * 6


def test_percentiles_match_to_the_last_digit_on_a_long_tail(rollup_db: str) -> None:
    with psycopg.connect(rollup_db, autocommit=True) as conn:
        _reset(conn)
        conn.execute(
            """
            INSERT INTO constitutional_validations
                (tenant_id, decision_id, compliance_score, processing_time_ms, created_at)
            SELECT 't-' || mod(i, 3), 'd', mod(i, 10001) / 10000.0,
                   CASE WHEN mod(i, 97) = 0 THEN NULL ELSE (exp(random() * 12))::int END,
                   now() - mod(i, 90000) * interval '1 second'
            FROM generate_series(1, 20000) AS i
            """
        )
        assert _view_equals_seed(conn) == (0, 0, 0, 0)
        conn.execute("SELECT fold_validation_rollup()")
        assert _view_equals_seed(conn) == (0, 0, 0, 0)
        p99 = conn.execute(
            "SELECT p99_processing_time_ms FROM tenant_constitutional_metrics_24h"
            " WHERE tenant_id = 't-1'"
        ).fetchone()
        assert p99 is not None and p99[0] > 0


def test_hour_bins_that_miss_counts_send_the_percentiles_to_the_per_value_pass(
    rollup_db: str,
) -> None:
    """A fold of the old code running across migration 0015 leaves hours without their bins:
    tenant_metrics_24h() and tenant_metrics_range() see that the bins do not count every timed
    row and stay exact."""
    with psycopg.connect(rollup_db, autocommit=True) as conn:
        _reset(conn)
        conn.execute(
            """
            INSERT INTO constitutional_validations
                (tenant_id, decision_id, compliance_score, processing_time_ms, created_at)
            SELECT 't-' || mod(i, 2), 'd', 0.97, (exp(random() * 11))::int,
                   now() - mod(i, 86000) * interval '1 second'
            FROM generate_series(1, 6000) AS i
            """
        )
        conn.execute("SELECT fold_validation_rollup()")
        assert _structures_agree(conn)
        complete = _hour_bins_complete(conn)
        assert complete == {"t-0": True, "t-1": True}
        conn.execute("DELETE FROM rollup_bins_hour WHERE tenant_id = 't-1' AND mod(bin, 3) = 0")
        assert _hour_bins_complete(conn) == {"t-0": True, "t-1": False}
        assert _view_equals_seed(conn) == (0, 0, 0, 0)
        assert _ranges_equal_seed(conn) == (0,) * 6
        assert _edges_equal_seed(conn) == (0,) * 6


def test_hour_bins_that_count_a_chosen_bin_wrong_send_the_percentiles_to_the_per_value_pass(
    rollup_db: str,
) -> None:
    """One count moved, in one hour, from a lower bin into the bin holding t-1's p95 (the
    bins still count every timed row, so the completeness check passes): the chosen bin's
    values no longer add up to its count, and tenant_metrics_24h() (v6, migration 0018)
    takes the per-value pass and stays exact, where trusting the bins would pick the value
    next to the right one."""
    with psycopg.connect(rollup_db, autocommit=True) as conn:
        _reset(conn)
        conn.execute(
            """
            INSERT INTO constitutional_validations
                (tenant_id, decision_id, compliance_score, processing_time_ms, created_at)
            SELECT 't-' || mod(i, 2), 'd', 0.97, (exp(random() * 11))::int,
                   now() - mod(i, 86000) * interval '1 second'
            FROM generate_series(1, 6000) AS i
            """
        )
        conn.execute("SELECT fold_validation_rollup()")
        moved = conn.execute(
            """
            WITH chosen AS (
                SELECT rollup_hour_bin(floor(p95_processing_time_ms)::int) AS bin
                FROM tenant_metrics_24h('t-1')
            ), hour AS (
                SELECT b.bucket, b.bin AS into_bin,
                       (SELECT max(l.bin) FROM rollup_bins_hour l
                         WHERE l.tenant_id = b.tenant_id AND l.bucket = b.bucket
                           AND l.bin < b.bin AND l.n > 0) AS from_bin
                FROM rollup_bins_hour b, chosen c
                WHERE b.tenant_id = 't-1' AND b.bin = c.bin
                  AND b.bucket > rollup_bucket(now()) - interval '20 hours'
                ORDER BY b.bucket
                LIMIT 1
            )
            UPDATE rollup_bins_hour u
            SET n = u.n + CASE WHEN u.bin = h.into_bin THEN 1 ELSE -1 END
            FROM hour h
            WHERE u.tenant_id = 't-1' AND u.bucket = h.bucket
              AND u.bin IN (h.into_bin, h.from_bin)
            """
        )
        assert moved.rowcount == 2
        assert _hour_bins_complete(conn) == {"t-0": True, "t-1": True}
        assert _view_equals_seed(conn) == (0, 0, 0, 0)
        assert _edges_equal_seed(conn) == (0,) * 6


def _hour_bins_complete(conn: psycopg.Connection) -> dict[str, bool]:
    """Per tenant: do the hour bins of its window count exactly its timed rows there?"""
    rows = conn.execute(
        """
        SELECT t.tenant_id,
               (SELECT coalesce(sum(b.n), 0) FROM rollup_bins_hour b
                 WHERE b.tenant_id = t.tenant_id
                   AND b.bucket >= rollup_bucket(now() - interval '24 hours') + rollup_width())
             = (SELECT coalesce(sum(h.timed), 0) FROM rollup_totals_hour h
                 WHERE h.tenant_id = t.tenant_id
                   AND h.bucket >= rollup_bucket(now() - interval '24 hours') + rollup_width())
        FROM (SELECT DISTINCT tenant_id FROM validation_rollup) AS t
        """
    ).fetchall()
    return {tenant: bool(complete) for tenant, complete in rows}


def test_coarse_day_bins_that_miss_counts_send_the_ranges_to_the_day_bins(
    rollup_db: str,
) -> None:
    """A fold of v5 running across migration 0016 leaves days without their coarse counts:
    tenant_metrics_range() sees that they do not count every timed row of those days and
    places the ranks from the day bins instead, exactly."""
    with psycopg.connect(rollup_db, autocommit=True) as conn:
        _reset(conn)
        conn.execute(
            """
            INSERT INTO constitutional_validations
                (tenant_id, decision_id, compliance_score, processing_time_ms, created_at)
            SELECT 't-' || mod(i, 2), 'd', 0.97, (exp(random() * 11))::int,
                   now() - mod(i, 5 * 86400 - 7) * interval '1 second'
            FROM generate_series(1, 8000) AS i
            """
        )
        conn.execute("SELECT fold_validation_rollup()")
        assert _structures_agree(conn)
        assert _coarse_days_complete(conn) == {"t-0": True, "t-1": True}
        assert _ranges_equal_seed(conn) == (0,) * 6
        conn.execute(
            "DELETE FROM rollup_bins_day_coarse WHERE tenant_id = 't-1' AND mod(bin, 3) = 0"
        )
        assert _coarse_days_complete(conn) == {"t-0": True, "t-1": False}
        assert _ranges_equal_seed(conn) == (0,) * 6


def _coarse_days_complete(conn: psycopg.Connection) -> dict[str, bool]:
    """Per tenant: do the coarse day bins count exactly its timed rows, day by day?"""
    rows = conn.execute(
        """
        SELECT t.tenant_id, bool_and(coalesce(c.n, 0) = t.timed)
        FROM (SELECT tenant_id,
                     date_bin(interval '1 day', bucket, timestamptz '2000-01-01 00:00:00+00')
                         AS day,
                     sum(timed) AS timed
                FROM rollup_totals_hour GROUP BY 1, 2) AS t
        LEFT JOIN (SELECT tenant_id, day, sum(n) AS n
                     FROM rollup_bins_day_coarse GROUP BY 1, 2) AS c
               ON c.tenant_id = t.tenant_id AND c.day = t.day
        GROUP BY t.tenant_id
        """
    ).fetchall()
    return {tenant: bool(complete) for tenant, complete in rows}


def test_a_tenant_with_only_unknown_times_has_no_percentiles(rollup_db: str) -> None:
    with psycopg.connect(rollup_db, autocommit=True) as conn:
        _reset(conn)
        conn.execute(
            "INSERT INTO constitutional_validations (tenant_id, decision_id, compliance_score)"
            " VALUES ('t-null', 'd', 0.5), ('t-null', 'd', 0.97)"
        )
        assert _view_equals_seed(conn) == (0, 0, 0, 0)
        row = conn.execute(
            "SELECT total_validations, avg_processing_time_ms, p95_processing_time_ms"
            " FROM tenant_constitutional_metrics_24h WHERE tenant_id = 't-null'"
        ).fetchone()
        assert row == (2, None, None)


# -- concurrency, late rows, retention --------------------------------------------------------


def test_concurrent_writers_during_folds_lose_and_double_nothing(rollup_db: str) -> None:
    with psycopg.connect(rollup_db, autocommit=True) as conn:
        _reset(conn)
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            with psycopg.connect(rollup_db, autocommit=True) as w:
                for i in range(40):
                    w.execute(
                        """
                        INSERT INTO constitutional_validations
                            (tenant_id, decision_id, compliance_score, processing_time_ms,
                             created_at)
                        SELECT 'w-' || mod(g, 5), 'd', mod(g, 100) / 100.0, mod(g, 37),
                               now() - (g * 61) * interval '1 second'
                        FROM generate_series(1, 50 + %s) AS g
                        """,
                        (n * 7 + i,),
                    )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def folder() -> None:
        try:
            with psycopg.connect(rollup_db, autocommit=True) as f:
                while not stop.is_set():
                    f.execute("SELECT fold_validation_rollup()")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    writers = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    fold_thread = threading.Thread(target=folder)
    fold_thread.start()
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    fold_thread.join()
    assert errors == []
    with psycopg.connect(rollup_db, autocommit=True) as conn:
        assert _invariant_holds(conn)
        conn.execute("SELECT fold_validation_rollup()")
        assert conn.execute("SELECT count(*) FROM validation_rollup_delta").fetchone() == (0,)
        assert _invariant_holds(conn)
        assert _view_equals_seed(conn) == (0, 0, 0, 0)


def test_a_fold_that_rolls_back_leaves_its_deltas_for_the_next(rollup_db: str) -> None:
    with psycopg.connect(rollup_db, autocommit=True) as conn:
        _reset(conn)
        conn.execute(
            "INSERT INTO constitutional_validations (tenant_id, decision_id, compliance_score,"
            " processing_time_ms) SELECT 'r', 'd', 0.5, g FROM generate_series(1, 100) g"
        )
        with pytest.raises(psycopg.errors.QueryCanceled), conn.transaction():
            conn.execute("SELECT fold_validation_rollup()")
            conn.execute("SET LOCAL statement_timeout = '1ms'")
            conn.execute("SELECT pg_sleep(1)")
        assert conn.execute("SELECT count(*) FROM validation_rollup").fetchone() == (0,)
        assert _invariant_holds(conn)
        assert conn.execute("SELECT fold_validation_rollup()").fetchone() == (100,)
        assert _invariant_holds(conn)


def test_buckets_of_partitions_dropped_by_retention_go_with_them(migrated_database: str) -> None:
    with psycopg.connect(migrated_database, autocommit=True) as conn:
        start = oldest_partition_start(conn)
        conn.execute(
            "INSERT INTO constitutional_validations (tenant_id, decision_id, compliance_score,"
            " processing_time_ms, created_at) VALUES ('old', 'd', 0.5, 3, %s), ('new', 'd', 0.9,"
            " 4, now())",
            (start + timedelta(days=2),),
        )
        conn.execute("SELECT fold_validation_rollup()")
        assert conn.execute("SELECT count(*) FROM validation_rollup").fetchone() == (2,)
        conn.execute(
            "UPDATE partman.part_config SET retention = '2 months'"
            " WHERE parent_table = 'public.constitutional_validations'"
        )
        conn.execute("CALL partman.run_maintenance_proc()")
        conn.execute("SELECT fold_validation_rollup()")
        tenants = [r[0] for r in conn.execute("SELECT tenant_id FROM validation_rollup")]
        assert tenants == ["new"]
        assert _invariant_holds(conn)


def test_old_rows_waiting_in_the_default_partition_keep_their_buckets(
    migrated_database: str,
) -> None:
    with psycopg.connect(migrated_database, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO constitutional_validations (tenant_id, decision_id, compliance_score,"
            " created_at) VALUES ('ancient', 'd', 0.5, '2001-02-03T04:05:06Z')"
        )
        conn.execute("SELECT fold_validation_rollup()")
        conn.execute("SELECT fold_validation_rollup()")
        assert _invariant_holds(conn)
        assert conn.execute(
            "SELECT count(*) FROM validation_rollup WHERE tenant_id = 'ancient'"
        ).fetchone() == (1,)


# -- deferred folds: the refresh folds the window, slices fold the backlog (migration 0014) ----

BACKFILL = """
INSERT INTO constitutional_validations
    (tenant_id, decision_id, compliance_score, processing_time_ms, created_at)
SELECT 'b-' || mod(g, 3), 'd-' || mod(g, 17), mod(g * 7, 10001) / 10000.0,
       CASE WHEN mod(g, 23) = 0 THEN NULL ELSE mod(g * 13, 900) END,
       now() - %(newest)s::interval - mod(g * 104729, %(spread)s) * interval '1 second'
FROM generate_series(1, %(rows)s) AS g
"""


def _backfill(conn: psycopg.Connection, rows: int, newest: str, spread_s: int) -> None:
    """`rows` validations of three tenants between `newest` ago and `spread_s` s before it."""
    conn.execute(BACKFILL, {"rows": rows, "newest": newest, "spread": spread_s})


def test_the_refresh_leaves_a_backfill_to_slices_and_every_figure_stays_exact(
    rollup_db: str,
) -> None:
    with psycopg.connect(rollup_db, autocommit=True) as conn:
        _reset(conn)
        _backfill(conn, 3000, "0 seconds", 86_000)  # the window
        _backfill(conn, 9000, "26 hours", 12 * 86_400)  # 1-13 days old: a backfill
        with conn.transaction():
            conn.execute("SELECT refresh_tenant_metrics_24h()")
            assert _window_pending(conn) == 0
            rows, buckets, oldest = _backlog(conn)
        # Nothing older than the line was folded: the whole backfill waits.
        assert rows > 0 and buckets > 100 and oldest is not None
        folded = conn.execute(
            "SELECT count(*) FROM validation_rollup WHERE bucket < rollup_window_line()"
        ).fetchone()
        assert folded == (0,)
        assert _view_equals_seed(conn) == (0, 0, 0, 0)
        assert _ranges_equal_seed(conn) == (0,) * 6
        assert _invariant_holds(conn) and _structures_agree(conn)
        # Slices drain it, oldest first, a bounded number of hours each.
        slices, previous_oldest = 0, oldest
        while _fold_one_slice(conn, 7) > 0:
            slices += 1
            with conn.transaction():
                left, _, now_oldest = _backlog(conn)
            assert now_oldest is None or now_oldest >= previous_oldest + timedelta(hours=7)
            previous_oldest = now_oldest or previous_oldest
            assert _structures_agree(conn)
            if slices == 3:  # midway: every figure still exact
                assert left > 0
                assert _ranges_equal_seed(conn) == (0,) * 6
                assert _view_equals_seed(conn) == (0, 0, 0, 0)
        assert slices >= buckets // 7
        with conn.transaction():
            assert _backlog(conn) == (0, 0, None)
        assert conn.execute("SELECT count(*) FROM validation_rollup_delta").fetchone() == (0,)
        assert _invariant_holds(conn) and _structures_agree(conn)
        assert _view_equals_seed(conn) == (0, 0, 0, 0)
        assert _ranges_equal_seed(conn) == (0,) * 6


def test_a_slice_needs_at_least_one_bucket(rollup_db: str) -> None:
    with psycopg.connect(rollup_db, autocommit=True) as conn:
        for buckets in (0, -3, None):
            with pytest.raises(psycopg.errors.InvalidParameterValue):
                conn.execute("SELECT fold_rollup_backlog(%s::integer)", (buckets,))


def test_writers_during_refreshes_and_slices_lose_and_double_nothing(rollup_db: str) -> None:
    with psycopg.connect(rollup_db, autocommit=True) as conn:
        _reset(conn)
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            with psycopg.connect(rollup_db, autocommit=True) as w:
                for i in range(30):
                    # Rows of the window and of the backlog in the same statement.
                    w.execute(
                        """
                        INSERT INTO constitutional_validations
                            (tenant_id, decision_id, compliance_score, processing_time_ms,
                             created_at)
                        SELECT 'w-' || mod(g, 5), 'd', mod(g, 100) / 100.0, mod(g, 37),
                               now() - (g * 3 + %s) * interval '1 hour'
                        FROM generate_series(1, 40 + %s) AS g
                        """,
                        (i, n * 7 + i),
                    )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def refresher() -> None:
        try:
            with psycopg.connect(rollup_db, autocommit=True) as f:
                while not stop.is_set():
                    f.execute("SELECT refresh_tenant_metrics_24h()")
                    f.execute("SELECT fold_rollup_backlog(2)")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def slicer() -> None:
        try:
            with psycopg.connect(rollup_db, autocommit=True) as f:
                while not stop.is_set():
                    f.execute("SELECT fold_rollup_backlog(1)")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    writers = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    folders = [threading.Thread(target=refresher), threading.Thread(target=slicer)]
    for t in folders + writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in folders:
        t.join()
    assert errors == []
    with psycopg.connect(rollup_db, autocommit=True) as conn:
        assert _invariant_holds(conn) and _structures_agree(conn)
        assert _view_equals_seed(conn) == (0, 0, 0, 0)
        assert _ranges_equal_seed(conn) == (0,) * 6
        while conn.execute("SELECT fold_rollup_backlog(50)").fetchone() != (0,):
            pass
        with conn.transaction():
            assert _backlog(conn) == (0, 0, None)
        assert _invariant_holds(conn) and _structures_agree(conn)


def test_slices_drop_the_buckets_of_partitions_retention_dropped(migrated_database: str) -> None:
    with psycopg.connect(migrated_database, autocommit=True) as conn:
        start = oldest_partition_start(conn)
        conn.execute(
            "INSERT INTO constitutional_validations (tenant_id, decision_id, compliance_score,"
            " processing_time_ms, created_at) VALUES ('old', 'd', 0.5, 3, %s), ('new', 'd', 0.9,"
            " 4, now())",
            (start + timedelta(days=2),),
        )
        conn.execute("SELECT refresh_tenant_metrics_24h()")
        while conn.execute("SELECT fold_rollup_backlog(1000)").fetchone() != (0,):
            pass
        assert conn.execute("SELECT count(*) FROM validation_rollup").fetchone() == (2,)
        conn.execute(
            "UPDATE partman.part_config SET retention = '2 months'"
            " WHERE parent_table = 'public.constitutional_validations'"
        )
        conn.execute("CALL partman.run_maintenance_proc()")
        assert conn.execute("SELECT fold_rollup_backlog(1)").fetchone() == (0,)
        tenants = [r[0] for r in conn.execute("SELECT tenant_id FROM validation_rollup")]
        assert tenants == ["new"]
        assert _invariant_holds(conn) and _structures_agree(conn)
