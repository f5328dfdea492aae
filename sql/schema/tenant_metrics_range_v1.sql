-- One tenant's figures over [p_since, p_until), exactly as the seed's aggregate SQL computes them
-- over the same rows (seed 000's SELECT with `created_at >= p_since AND created_at < p_until`
-- for this tenant). p_until NULL means no upper bound.
--
-- The range splits into
--   * whole days [dlo, dhi): totals from rollup_totals_hour, counts of timed rows per value bin
--     from rollup_bins_day (both kept by fold_validation_rollup() with validation_rollup);
--   * the other whole hour buckets [wf, dlo) and [dhi, wt): validation_rollup per value;
--   * the pending validation_rollup_delta of every whole hour [wf, wt) per value;
--   * the partial edge hours [p_since, wf) and [wt, p_until): the raw rows (index-only range
--     scans of idx_constitutional_validations_tenant_hash_time).
-- wf is the first bucket boundary >= p_since, wt the last one <= p_until (when wf > wt the two
-- raw ranges together are exactly [p_since, p_until)). Deletes and updates are negative deltas.
--
-- PERCENTILE_CONT(p) is lo + (hi - lo) * f at the 0-based rank p * (n - 1) of the timed rows
-- (float8 arithmetic as PostgreSQL's). The cumulative bin counts locate the bin holding each of
-- the four ranks needed (floor and ceil, for p95 and p99); only those bins are then read value
-- by value (index validation_rollup_value over the whole days, plus the per-value rows above),
-- so the cost follows the days and the values inside four bins, not hours x distinct values.
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
    SELECT r.processing_time_ms AS v, r.validations AS n, r.score_sum, r.below_95, r.below_90
    FROM validation_rollup r, sp
    WHERE r.tenant_id = p_tenant AND r.bucket >= sp.wf AND r.bucket < least(sp.dlo, sp.wt)
    UNION ALL
    SELECT r.processing_time_ms, r.validations, r.score_sum, r.below_95, r.below_90
    FROM validation_rollup r, sp
    WHERE r.tenant_id = p_tenant AND r.bucket >= greatest(sp.dhi, sp.wf) AND r.bucket < sp.wt
    UNION ALL
    SELECT d.processing_time_ms, d.validations, d.score_sum, d.below_95, d.below_90
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
           sum(u.below_90) AS below_90
    FROM (
        SELECT t.total, t.timed, t.time_sum, t.score_sum, t.below_95, t.below_90
        FROM rollup_totals_hour t, sp
        WHERE t.tenant_id = p_tenant AND t.bucket >= sp.dlo AND t.bucket < sp.dhi
        UNION ALL
        SELECT e.n, CASE WHEN e.v IS NULL THEN 0 ELSE e.n END, e.v::numeric * e.n,
               e.score_sum, e.below_95, e.below_90
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
), bins AS (
    SELECT u.bin, sum(u.n) AS n
    FROM (
        SELECT b.bin, b.n
        FROM rollup_bins_day b, sp
        WHERE b.tenant_id = p_tenant AND b.day >= sp.dlo AND b.day < sp.dhi
        UNION ALL
        SELECT rollup_bin(e.v), e.n FROM edge_v e WHERE e.v IS NOT NULL
    ) AS u
    GROUP BY u.bin
    HAVING sum(u.n) <> 0
), cum_bins AS (
    SELECT bin, sum(n) OVER (ORDER BY bin) - n AS before, sum(n) OVER (ORDER BY bin) AS upto
    FROM bins
), target_bins AS (
    SELECT t.k, t.side, t.at, t.rank, c.bin, c.before
    FROM targets t
    JOIN cum_bins c ON t.rank >= c.before AND t.rank < c.upto
), bin_values AS (
    SELECT tb.bin, x.v, sum(x.n) AS n
    FROM (SELECT DISTINCT bin FROM target_bins) AS tb
    CROSS JOIN LATERAL (
        SELECT r.processing_time_ms AS v, r.validations AS n
        FROM validation_rollup r, sp
        WHERE r.tenant_id = p_tenant
          AND r.processing_time_ms >= rollup_bin_lo(tb.bin)
          AND r.processing_time_ms < rollup_bin_lo(tb.bin + 1)
          AND r.bucket >= sp.dlo AND r.bucket < sp.dhi
        UNION ALL
        SELECT e.v, e.n
        FROM edge_v e
        WHERE e.v >= rollup_bin_lo(tb.bin) AND e.v < rollup_bin_lo(tb.bin + 1)
    ) AS x
    GROUP BY tb.bin, x.v
    HAVING sum(x.n) <> 0
), picked AS (
    SELECT tb.k, tb.side, tb.at,
           (SELECT min(c.v)
              FROM (SELECT bv.v, tb.before + sum(bv.n) OVER (ORDER BY bv.v) AS upto
                      FROM bin_values bv
                     WHERE bv.bin = tb.bin) AS c
             WHERE c.upto > tb.rank) AS v
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
