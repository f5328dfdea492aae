-- One tenant's figures over [p_since, p_until), exactly as the seed's aggregate SQL computes them
-- over the same rows (seed 000's SELECT with `created_at >= p_since AND created_at < p_until`
-- for this tenant). p_until NULL means no upper bound. v4 (migration 0018).
--
-- The range splits into
--   * whole days [dlo, dhi): counts of timed rows per coarse bin (rollup_hour_bin()) from
--     rollup_bins_day_coarse, and per value bin (rollup_bin()) from rollup_bins_day, read only
--     for the bins inside the coarse bins that hold a rank (index rollup_bins_day_by_bin);
--   * the other whole hour buckets [wf, dlo) and [dhi, wt): counts per coarse bin
--     (rollup_hour_bin(), eight bins in one) from rollup_bins_hour;
--   * every whole hour [wf, wt): totals from rollup_totals_hour (all three kept by the fold
--     with validation_rollup), and the pending validation_rollup_delta per value;
--   * the partial edge hours [p_since, wf) and [wt, p_until): the raw rows (index-only range
--     scans of idx_constitutional_validations_tenant_hash_time).
-- wf is the first bucket boundary >= p_since, wt the last one <= p_until (when wf > wt the two
-- raw ranges together are exactly [p_since, p_until)). Deletes and updates are negative deltas.
--
-- PERCENTILE_CONT(p) is lo + (hi - lo) * f at the 0-based rank p * (n - 1) of the timed rows
-- (float8 arithmetic as PostgreSQL's). Each of the four ranks needed (floor and ceil, for p95
-- and p99) is located in three steps, each reading little:
--   1. the coarse bin holding it, from the coarse counts above (v2 coarsened the day bins
--      here: 30 days x ~500 bins read and summed for a tenant with a long tail, ~1/3 of v2's
--      time; v3 reads 30 days x ~64 coarse bins);
--   2. the bin inside that coarse bin, from the day bins of its eight bins (8 index range scans
--      over the days) and the other whole hours' rollup rows of the coarse bin's values (index
--      validation_rollup_value);
--   3. the value inside that bin, from the rollup rows of the bin's values over every whole hour
--      and the per-value rows above.
-- v4 reads the rollup's values so that the cost follows the range, not the history: v3 read
-- them by validation_rollup_value (tenant, value, bucket), where a value range holds every
-- bucket the rollup keeps, so steps 2 and 3 walked those values over the whole retention
-- (an 18-hour range of a long-tail tenant: 16 + 12 index pages with one day of history,
-- 117 + 113 with 31 days). Step 2 now reads the edge hours (at most 47) hour by hour by the
-- rollup's key; step 3 does so when the chosen bins hold more than 20 rows per hour and bin
-- over the whole retention (day bins over every day, by rollup_bins_day_by_bin), else by
-- value as before (a long range over a short history: one scan instead of hours x bins
-- index descents). Both ways give the same rows; a one-time filter picks one.
-- So the cost follows the days, the edge hours' bins and the values inside a few bins, not
-- hours x distinct values (v1 read every edge hour value by value: 20 of its 27 ms for a tenant
-- with 1,000,000 rows and a long tail over 30 days).
-- Trust, then verify: the hour bins of [wf, dlo) and [dhi, wt) must count exactly the timed
-- rows rollup_totals_hour counts there; otherwise (a fold of the old code running across
-- migration 0015) step 1 takes those hours from validation_rollup value by value, as v1 did.
-- Likewise the coarse day bins of [dlo, dhi) must count exactly the timed rows of those days'
-- hours (summed in the same pass as the totals); otherwise (a fold of v5 running across
-- migration 0016) steps 1 and 2 take the days from the day bins, as v2 did. Each fallback
-- branch is gated by a one-time filter, so it reads nothing when the bins are complete.
-- Averages are the numeric divisions AVG performs.
--
-- Plain SQL with an SQL-standard body (names bound at creation) and no SET clause, so callers
-- get it inlined and planned with their parameters.
CREATE OR REPLACE FUNCTION tenant_metrics_range(
    p_tenant varchar, p_since timestamptz, p_until timestamptz)
RETURNS TABLE (
    tenant_id varchar,
    constitutional_hash varchar,
    avg_compliance_score numeric,
    total_validations bigint,
    failed_validations bigint,
    avg_processing_time_ms numeric,
    p95_processing_time_ms double precision,
    p99_processing_time_ms double precision,
    constitutional_violations bigint,
    last_updated timestamptz
)
LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
WITH span0 AS (
    SELECT p_since AS since,
           coalesce(p_until, 'infinity'::timestamptz) AS until,
           CASE WHEN rollup_bucket(p_since) = p_since THEN p_since
                ELSE rollup_bucket(p_since) + rollup_width() END AS wf,
           CASE WHEN p_until IS NULL THEN 'infinity'::timestamptz
                ELSE rollup_bucket(p_until) END AS wt
), span1 AS (
    SELECT s.*,
           CASE WHEN date_bin(interval '1 day', s.wf, timestamptz '2000-01-01 00:00:00+00') = s.wf
                THEN s.wf
                ELSE date_bin(interval '1 day', s.wf, timestamptz '2000-01-01 00:00:00+00')
                     + interval '1 day' END AS dlo,
           CASE WHEN s.wt = 'infinity'::timestamptz THEN s.wt
                ELSE date_bin(interval '1 day', s.wt, timestamptz '2000-01-01 00:00:00+00')
                END AS dhi0
    FROM span0 s
), sp AS (
    SELECT since, until, wf, wt, dlo, greatest(dhi0, dlo) AS dhi FROM span1
), edge AS (
    -- Per value: the pending deltas of every whole hour, then the raw rows of the edges.
    SELECT d.processing_time_ms AS v, d.validations AS n, d.score_sum, d.below_95, d.below_90
    FROM validation_rollup_delta d, sp
    WHERE d.tenant_id = p_tenant AND d.bucket >= sp.wf AND d.bucket < sp.wt
    UNION ALL
    SELECT x.processing_time_ms, 1, x.compliance_score,
           (x.compliance_score < 0.95)::int, (x.compliance_score < 0.90)::int
    FROM constitutional_validations x, sp
    WHERE x.tenant_id = p_tenant AND x.constitutional_hash = 'cdd01ef066bc6cf2'
      AND x.created_at >= sp.since AND x.created_at < least(sp.wf, sp.until)
    UNION ALL
    SELECT x.processing_time_ms, 1, x.compliance_score,
           (x.compliance_score < 0.95)::int, (x.compliance_score < 0.90)::int
    FROM constitutional_validations x, sp
    WHERE x.tenant_id = p_tenant AND x.constitutional_hash = 'cdd01ef066bc6cf2'
      AND x.created_at >= greatest(sp.wt, sp.wf) AND x.created_at < sp.until
), edge_v AS MATERIALIZED (
    SELECT v, sum(n) AS n, sum(score_sum) AS score_sum, sum(below_95) AS below_95,
           sum(below_90) AS below_90
    FROM edge
    GROUP BY v
), totals AS (
    SELECT sum(u.total) AS total, sum(u.timed) AS timed, sum(u.time_sum) AS time_sum,
           sum(u.score_sum) AS score_sum, sum(u.below_95) AS below_95,
           sum(u.below_90) AS below_90, sum(u.days_timed) AS days_timed,
           sum(u.hours) AS hours
    FROM (
        SELECT t.total, t.timed, t.time_sum, t.score_sum, t.below_95, t.below_90,
               CASE WHEN t.bucket >= sp.dlo AND t.bucket < sp.dhi THEN t.timed ELSE 0 END
                   AS days_timed,
               1 AS hours
        FROM rollup_totals_hour t, sp
        WHERE t.tenant_id = p_tenant AND t.bucket >= sp.wf AND t.bucket < sp.wt
        UNION ALL
        SELECT e.n, CASE WHEN e.v IS NULL THEN 0 ELSE e.n END, e.v::numeric * e.n,
               e.score_sum, e.below_95, e.below_90, 0, 0
        FROM edge_v e
    ) AS u
), ranks AS (
    SELECT r.k, r.p * (t.timed - 1)::float8 AS at
    FROM totals t, (VALUES (95, 0.95::float8), (99, 0.99::float8)) AS r(k, p)
    WHERE t.timed > 0
), targets AS (
    SELECT k, at, floor(at)::bigint AS rank, 'lo' AS side FROM ranks
    UNION ALL
    SELECT k, at, ceil(at)::bigint, 'hi' FROM ranks
), day_coarse AS MATERIALIZED (
    SELECT b.bin, sum(b.n) AS n
    FROM rollup_bins_day_coarse b, sp
    WHERE b.tenant_id = p_tenant AND b.day >= sp.dlo AND b.day < sp.dhi
    GROUP BY b.bin
), days_binned AS (
    SELECT coalesce((SELECT sum(d.n) FROM day_coarse d), 0) = coalesce(t.days_timed, 0)
           AS complete
    FROM totals t
), day_bins AS MATERIALIZED (
    SELECT b.bin, sum(b.n) AS n
    FROM rollup_bins_day b, sp
    WHERE b.tenant_id = p_tenant AND b.day >= sp.dlo AND b.day < sp.dhi
    GROUP BY b.bin
), hour_bins AS MATERIALIZED (
    SELECT h.bin, h.n
    FROM rollup_bins_hour h, sp
    WHERE h.tenant_id = p_tenant AND h.bucket >= sp.wf AND h.bucket < least(sp.dlo, sp.wt)
    UNION ALL
    SELECT h.bin, h.n
    FROM rollup_bins_hour h, sp
    WHERE h.tenant_id = p_tenant AND h.bucket >= greatest(sp.dhi, sp.wf) AND h.bucket < sp.wt
), edge_hours AS MATERIALIZED (
    -- The whole hours outside the whole days (at most 2 x 23, or 47 without a whole day).
    SELECT t.bucket
    FROM rollup_totals_hour t, sp
    WHERE t.tenant_id = p_tenant AND t.bucket >= sp.wf AND t.bucket < least(sp.dlo, sp.wt)
    UNION ALL
    SELECT t.bucket
    FROM rollup_totals_hour t, sp
    WHERE t.tenant_id = p_tenant AND t.bucket >= greatest(sp.dhi, sp.wf) AND t.bucket < sp.wt
), range_hours AS MATERIALIZED (
    SELECT t.bucket
    FROM rollup_totals_hour t, sp
    WHERE t.tenant_id = p_tenant AND t.bucket >= sp.wf AND t.bucket < sp.wt
), hours_binned AS (
    SELECT coalesce((SELECT sum(h.n) FROM hour_bins h), 0)
           = coalesce((SELECT sum(t.timed)
                         FROM rollup_totals_hour t, sp
                        WHERE t.tenant_id = p_tenant
                          AND t.bucket >= sp.wf AND t.bucket < least(sp.dlo, sp.wt)), 0)
             + coalesce((SELECT sum(t.timed)
                           FROM rollup_totals_hour t, sp
                          WHERE t.tenant_id = p_tenant
                            AND t.bucket >= greatest(sp.dhi, sp.wf) AND t.bucket < sp.wt), 0)
           AS complete
), coarse AS (
    SELECT u.bin, sum(u.n) AS n
    FROM (
        SELECT d.bin, d.n FROM day_coarse d WHERE (SELECT c.complete FROM days_binned c)
        UNION ALL
        SELECT d.bin >> 3, d.n FROM day_bins d WHERE NOT (SELECT c.complete FROM days_binned c)
        UNION ALL
        SELECT h.bin, h.n FROM hour_bins h, hours_binned c WHERE c.complete
        UNION ALL
        SELECT rollup_hour_bin(r.processing_time_ms), r.validations
        FROM validation_rollup r, sp, hours_binned c
        WHERE NOT c.complete AND r.tenant_id = p_tenant AND r.processing_time_ms IS NOT NULL
          AND r.bucket >= sp.wf AND r.bucket < least(sp.dlo, sp.wt)
        UNION ALL
        SELECT rollup_hour_bin(r.processing_time_ms), r.validations
        FROM validation_rollup r, sp, hours_binned c
        WHERE NOT c.complete AND r.tenant_id = p_tenant AND r.processing_time_ms IS NOT NULL
          AND r.bucket >= greatest(sp.dhi, sp.wf) AND r.bucket < sp.wt
        UNION ALL
        SELECT rollup_hour_bin(e.v), e.n FROM edge_v e WHERE e.v IS NOT NULL
    ) AS u
    GROUP BY u.bin
    HAVING sum(u.n) <> 0
), cum_coarse AS (
    SELECT bin, sum(n) OVER (ORDER BY bin) - n AS before, sum(n) OVER (ORDER BY bin) AS upto
    FROM coarse
), target_coarse AS MATERIALIZED (
    SELECT t.k, t.side, t.at, t.rank, c.bin AS coarse, c.before
    FROM targets t
    JOIN cum_coarse c ON t.rank >= c.before AND t.rank < c.upto
    -- Four rows at most (a rank lies in one bin): the LIMIT tells the planner so, which keeps
    -- the estimate of the steps below, and so JIT, away (measured: 3.5 s of JIT compilation
    -- for a 14 ms query without it).
    LIMIT 4
), fine AS (
    -- The bins (rollup_bin()) inside each chosen coarse bin.
    SELECT tc.coarse, x.bin, sum(x.n) AS n
    FROM (SELECT DISTINCT coarse FROM target_coarse) AS tc
    CROSS JOIN LATERAL (
        -- One index range scan (rollup_bins_day_by_bin) per bin of the eight; OFFSET 0 keeps
        -- the planner from flattening it into a hash join over every day bin of the range
        -- (measured), and the VALUES list tells it there are eight (generate_series() with
        -- computed bounds is estimated at 1,000 rows).
        SELECT d.bin, d.n
        FROM sp, (VALUES (0), (1), (2), (3), (4), (5), (6), (7)) AS g(k)
        CROSS JOIN LATERAL (
            SELECT b.bin, b.n FROM rollup_bins_day b
            WHERE b.tenant_id = p_tenant AND b.bin = (tc.coarse << 3) + g.k
              AND b.day >= sp.dlo AND b.day < sp.dhi
            OFFSET 0) AS d
        WHERE (SELECT c.complete FROM days_binned c)
        UNION ALL
        SELECT d.bin, d.n FROM day_bins d
        WHERE NOT (SELECT c.complete FROM days_binned c) AND d.bin >> 3 = tc.coarse
        UNION ALL
        -- The edge hours' values of the coarse bin, hour by hour by the rollup's key (at most
        -- 47 hours): by value (validation_rollup_value) the scan would walk the coarse bin's
        -- values of every bucket the rollup keeps.
        SELECT rollup_bin(r.v), r.n
        FROM edge_hours h
        CROSS JOIN LATERAL (
            SELECT r.processing_time_ms AS v, r.validations AS n
            FROM validation_rollup r
            WHERE r.tenant_id = p_tenant AND r.bucket = h.bucket
              AND r.processing_time_ms >= rollup_hour_bin_lo(tc.coarse)
              AND r.processing_time_ms < rollup_hour_bin_lo(tc.coarse + 1)
            OFFSET 0) AS r
        UNION ALL
        SELECT rollup_bin(e.v), e.n
        FROM edge_v e
        WHERE e.v >= rollup_hour_bin_lo(tc.coarse) AND e.v < rollup_hour_bin_lo(tc.coarse + 1)
    ) AS x
    GROUP BY tc.coarse, x.bin
    HAVING sum(x.n) <> 0
), cum_fine AS (
    SELECT coarse, bin,
           sum(n) OVER (PARTITION BY coarse ORDER BY bin) - n AS before_in,
           sum(n) OVER (PARTITION BY coarse ORDER BY bin) AS upto_in
    FROM fine
), target_bins AS MATERIALIZED (
    SELECT tc.k, tc.side, tc.at, tc.rank, f.bin, tc.before + f.before_in AS before
    FROM target_coarse tc
    JOIN cum_fine f ON f.coarse = tc.coarse
     AND tc.rank >= tc.before + f.before_in AND tc.rank < tc.before + f.upto_in
    LIMIT 4
), value_plan AS (
    -- How to read the chosen bins' values over the whole hours: by value
    -- (validation_rollup_value: every bucket the rollup keeps of those values, so rows of the
    -- whole retention) or hour by hour (the rollup's key: one index descent per hour and bin).
    -- Hour by hour when the bins' rows over the retention (day bins, every day) outnumber
    -- 20 rows per descent: short ranges over a long history.
    SELECT (SELECT coalesce(sum(d.n), 0)
              FROM (SELECT DISTINCT bin FROM target_bins) AS tb
              CROSS JOIN LATERAL (
                  SELECT b.n FROM rollup_bins_day b
                  WHERE b.tenant_id = p_tenant AND b.bin = tb.bin
                  OFFSET 0) AS d)
           > 20 * coalesce(t.hours, 0) * (SELECT count(DISTINCT bin) FROM target_bins)
           AS hourly
    FROM totals t
), bin_values AS MATERIALIZED (
    SELECT tb.bin, x.v, sum(x.n) AS n
    FROM (SELECT DISTINCT bin FROM target_bins) AS tb
    CROSS JOIN LATERAL (
        SELECT r.processing_time_ms AS v, r.validations AS n
        FROM validation_rollup r, sp
        WHERE NOT (SELECT c.hourly FROM value_plan c)
          AND r.tenant_id = p_tenant
          AND r.processing_time_ms >= rollup_bin_lo(tb.bin)
          AND r.processing_time_ms < rollup_bin_lo(tb.bin + 1)
          AND r.bucket >= sp.wf AND r.bucket < sp.wt
        UNION ALL
        SELECT r.v, r.n
        FROM range_hours h
        CROSS JOIN LATERAL (
            SELECT r.processing_time_ms AS v, r.validations AS n
            FROM validation_rollup r
            WHERE r.tenant_id = p_tenant AND r.bucket = h.bucket
              AND r.processing_time_ms >= rollup_bin_lo(tb.bin)
              AND r.processing_time_ms < rollup_bin_lo(tb.bin + 1)
            OFFSET 0) AS r
        WHERE (SELECT c.hourly FROM value_plan c)
        UNION ALL
        SELECT e.v, e.n
        FROM edge_v e
        WHERE e.v >= rollup_bin_lo(tb.bin) AND e.v < rollup_bin_lo(tb.bin + 1)
    ) AS x
    GROUP BY tb.bin, x.v
    HAVING sum(x.n) <> 0
), bin_upto AS MATERIALIZED (
    SELECT bv.bin, bv.v, sum(bv.n) OVER (PARTITION BY bv.bin ORDER BY bv.v) AS upto
    FROM bin_values bv
), picked AS (
    SELECT tb.k, tb.side, tb.at,
           (SELECT min(c.v) FROM bin_upto c
             WHERE c.bin = tb.bin AND tb.before + c.upto > tb.rank) AS v
    FROM target_bins tb
), pct AS (
    SELECT lo.k, lo.at, lo.v AS lo, hi.v AS hi
    FROM picked lo
    JOIN picked hi ON hi.k = lo.k
    WHERE lo.side = 'lo' AND hi.side = 'hi'
)
SELECT p_tenant,
       'cdd01ef066bc6cf2'::varchar,
       t.score_sum / t.total,
       t.total::bigint,
       t.below_95::bigint,
       t.time_sum / nullif(t.timed, 0),
       (SELECT p.lo::float8 + (p.hi::float8 - p.lo::float8) * (p.at - floor(p.at))
          FROM pct p WHERE p.k = 95),
       (SELECT p.lo::float8 + (p.hi::float8 - p.lo::float8) * (p.at - floor(p.at))
          FROM pct p WHERE p.k = 99),
       t.below_90::bigint,
       now()
FROM totals t
WHERE t.total > 0;
END
