-- One tenant's figures over the last 24 hours, exactly as the seed's SQL computes them (v4,
-- migration 0015). The window splits as in v3 (tenant_metrics_24h_v3.sql): the whole hour
-- buckets from whole_from on (rollup_totals_hour, validation_rollup, their pending deltas) and
-- the raw rows of the partial bucket at its edge. What changes is the percentile pass: v3 summed
-- every (hour, value) pair of the window, ~18,000 rows for a tenant with a long tail of times
-- (50,000 rows, 4,000 distinct times), whatever the percentiles needed. v4 sums the coarse bins
-- of rollup_bins_hour (~1,600 rows for the same tenant), finds the bins holding the four ranks
-- PERCENTILE_CONT needs (floor and ceil of p * (n - 1), for p95 and p99), then reads only those
-- bins value by value (index validation_rollup_value), as tenant_metrics_range() does with its
-- day bins (tenant_metrics_range_v1.sql has the arithmetic).
-- Trust, then verify: the bins must count exactly the timed rows the totals count. Only a fold
-- of v4's code (rollup_fold_v4.sql) that was already running when migration 0015 committed can
-- fold deltas without their bins; then, and whenever the two counts differ, the percentiles
-- come from v3's per-value pass instead (CTE per_value, read only in that case), so the figures
-- stay exact while such hours age out of the window.
-- SQL-standard body (names bound at creation), no SET clause: inlined, and the view calls it
-- once per tenant.
CREATE OR REPLACE FUNCTION tenant_metrics_24h(p_tenant varchar)
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
WITH span AS (
    SELECT now() - interval '24 hours' AS since,
           rollup_bucket(now() - interval '24 hours') + rollup_width() AS whole_from
), raw AS MATERIALIZED (
    SELECT v.processing_time_ms, v.compliance_score
    FROM constitutional_validations v, span s
    WHERE v.tenant_id = p_tenant
      AND v.constitutional_hash = 'cdd01ef066bc6cf2'
      AND v.created_at >= s.since
      AND v.created_at < s.whole_from
), pending AS MATERIALIZED (
    SELECT d.processing_time_ms, d.validations, d.score_sum, d.below_95, d.below_90
    FROM validation_rollup_delta d, span s
    WHERE d.tenant_id = p_tenant AND d.bucket >= s.whole_from
), edge_v AS MATERIALIZED (
    -- Timed rows outside rollup_bins_hour: pending deltas and the raw edge, per value.
    SELECT u.v, sum(u.n) AS n
    FROM (
        SELECT p.processing_time_ms AS v, p.validations AS n
        FROM pending p
        WHERE p.processing_time_ms IS NOT NULL
        UNION ALL
        SELECT r.processing_time_ms, 1
        FROM raw r
        WHERE r.processing_time_ms IS NOT NULL
    ) AS u
    GROUP BY u.v
), totals AS (
    SELECT sum(u.total) AS total, sum(u.timed) AS timed, sum(u.time_sum) AS time_sum,
           sum(u.score_sum) AS score_sum, sum(u.below_95) AS below_95,
           sum(u.below_90) AS below_90
    FROM (
        SELECT t.total, t.timed, t.time_sum, t.score_sum, t.below_95, t.below_90
        FROM rollup_totals_hour t, span s
        WHERE t.tenant_id = p_tenant AND t.bucket >= s.whole_from
        UNION ALL
        SELECT p.validations,
               CASE WHEN p.processing_time_ms IS NULL THEN 0 ELSE p.validations END,
               coalesce(p.processing_time_ms::numeric * p.validations, 0),
               p.score_sum, p.below_95, p.below_90
        FROM pending p
        UNION ALL
        SELECT count(*), count(r.processing_time_ms), coalesce(sum(r.processing_time_ms), 0),
               sum(r.compliance_score), count(*) FILTER (WHERE r.compliance_score < 0.95),
               count(*) FILTER (WHERE r.compliance_score < 0.90)
        FROM raw r
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
        FROM rollup_bins_hour b, span s
        WHERE b.tenant_id = p_tenant AND b.bucket >= s.whole_from
        UNION ALL
        SELECT rollup_hour_bin(e.v), e.n FROM edge_v e
    ) AS u
    GROUP BY u.bin
    HAVING sum(u.n) <> 0
), cum_bins AS (
    SELECT bin, sum(n) OVER (ORDER BY bin) - n AS before, sum(n) OVER (ORDER BY bin) AS upto
    FROM bins
), binned AS (
    SELECT coalesce((SELECT sum(b.n) FROM bins b), 0) = coalesce(t.timed, 0) AS complete
    FROM totals t
), target_bins AS (
    SELECT t.k, t.side, t.at, t.rank, c.bin, c.before
    FROM targets t
    JOIN cum_bins c ON t.rank >= c.before AND t.rank < c.upto
), bin_values AS MATERIALIZED (
    SELECT tb.bin, x.v, sum(x.n) AS n
    FROM (SELECT DISTINCT bin FROM target_bins) AS tb
    CROSS JOIN LATERAL (
        SELECT r.processing_time_ms AS v, r.validations AS n
        FROM validation_rollup r, span s
        WHERE r.tenant_id = p_tenant
          AND r.processing_time_ms >= rollup_hour_bin_lo(tb.bin)
          AND r.processing_time_ms < rollup_hour_bin_lo(tb.bin + 1)
          AND r.bucket >= s.whole_from
        UNION ALL
        SELECT e.v, e.n
        FROM edge_v e
        WHERE e.v >= rollup_hour_bin_lo(tb.bin) AND e.v < rollup_hour_bin_lo(tb.bin + 1)
    ) AS x
    GROUP BY tb.bin, x.v
    HAVING sum(x.n) <> 0
), bin_upto AS MATERIALIZED (
    -- Computed once (not once per rank): the running count of each chosen bin's values.
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
), per_value AS (
    -- v3's pass over every (hour, value) pair: read only when the bins are not complete.
    SELECT u.v, sum(u.n) AS n
    FROM (
        SELECT r.processing_time_ms AS v, r.validations AS n
        FROM validation_rollup r, span s
        WHERE r.tenant_id = p_tenant AND r.bucket >= s.whole_from
          AND r.processing_time_ms IS NOT NULL
        UNION ALL
        SELECT e.v, e.n FROM edge_v e
    ) AS u
    GROUP BY u.v
    HAVING sum(u.n) <> 0
), per_value_upto AS (
    SELECT v, sum(n) OVER (ORDER BY v) AS upto FROM per_value
), per_value_pct AS (
    SELECT r.k, r.at,
           (SELECT min(c.v) FROM per_value_upto c WHERE c.upto > floor(r.at)) AS lo,
           (SELECT min(c.v) FROM per_value_upto c WHERE c.upto > ceil(r.at)) AS hi
    FROM ranks r
), chosen AS (
    SELECT p.k, p.at, p.lo, p.hi FROM pct p, binned b WHERE b.complete
    UNION ALL
    SELECT p.k, p.at, p.lo, p.hi FROM per_value_pct p, binned b WHERE NOT b.complete
)
SELECT p_tenant,
       'cdd01ef066bc6cf2'::varchar,
       t.score_sum / t.total,
       t.total::bigint,
       t.below_95::bigint,
       t.time_sum / nullif(t.timed, 0),
       (SELECT p.lo::float8 + (p.hi::float8 - p.lo::float8) * (p.at - floor(p.at))
          FROM chosen p WHERE p.k = 95),
       (SELECT p.lo::float8 + (p.hi::float8 - p.lo::float8) * (p.at - floor(p.at))
          FROM chosen p WHERE p.k = 99),
       t.below_90::bigint,
       now()
FROM totals t
WHERE t.total > 0;
END
