-- One tenant's figures over the 24 hours before p_now (rows with created_at >= p_now - 24 hours,
-- as the seed's SQL counts them at p_now), exactly as the seed's SQL computes them (v6,
-- migration 0018); tenant_metrics_24h(p_tenant) is this at now(). As v5
-- (tenant_metrics_24h_v5.sql: totals from rollup_totals_hour, percentiles from the hour bins,
-- then the values of the few bins holding the ranks; the partial bucket at the window's start
-- read from its shorter part), except where the chosen bins' values are read. v5 read them by
-- validation_rollup_value (tenant, value, bucket): a value range of that index holds every
-- bucket the rollup keeps, so the scan walked the bins' values of the whole retention to keep
-- the window's (measured: a long-tail tenant with 7 more days of history took +1.0 ms a call,
-- 3.1 -> 4.1 ms; at 13 months of retention, hundreds of days' worth). v6 reads them by the
-- rollup's key (tenant, bucket, value), one range per hour of the window (the hours of
-- rollup_totals_hour, read once for the totals and for this) and chosen bin: about 24 short
-- ranges per chosen bin, whatever the retention.
-- Trust, then verify: as v4, the hour bins must count exactly the timed rows of the totals;
-- and now also each chosen bin's values must add up to the bin's count, else the percentiles
-- come from v3's per-value pass (as when the bins are incomplete).
-- SQL-standard bodies (names bound at creation), no SET clause: both are inlined (this one into
-- tenant_metrics_24h(), that one into its callers), and the view calls it once per tenant.
CREATE OR REPLACE FUNCTION tenant_metrics_24h_at(p_tenant varchar, p_now timestamptz)
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
    -- The bucket holding `since`, [lo, hi): counted from the raw rows of [since, hi) (sign 1),
    -- or, when [lo, since) is the shorter part, as the whole bucket (rollup and pending deltas,
    -- with the hours after it) minus the raw rows of [lo, since) (sign -1).
    SELECT b.since,
           CASE WHEN b.since - b.lo <= b.hi - b.since THEN b.lo ELSE b.hi END AS hours_from,
           CASE WHEN b.since - b.lo <= b.hi - b.since THEN b.lo ELSE b.since END AS raw_from,
           CASE WHEN b.since - b.lo <= b.hi - b.since THEN b.since ELSE b.hi END AS raw_until,
           CASE WHEN b.since - b.lo <= b.hi - b.since THEN -1 ELSE 1 END AS sign
    FROM (SELECT p_now - interval '24 hours' AS since,
                 rollup_bucket(p_now - interval '24 hours') AS lo,
                 rollup_bucket(p_now - interval '24 hours') + rollup_width() AS hi) AS b
), raw AS MATERIALIZED (
    SELECT v.processing_time_ms, v.compliance_score, s.sign
    FROM constitutional_validations v, span s
    WHERE v.tenant_id = p_tenant
      AND v.constitutional_hash = 'cdd01ef066bc6cf2'
      AND v.created_at >= s.raw_from
      AND v.created_at < s.raw_until
), pending AS MATERIALIZED (
    SELECT d.processing_time_ms, d.validations, d.score_sum, d.below_95, d.below_90
    FROM validation_rollup_delta d, span s
    WHERE d.tenant_id = p_tenant AND d.bucket >= s.hours_from
), edge_v AS MATERIALIZED (
    -- Timed rows outside rollup_bins_hour: pending deltas and the raw edge (signed), per
    -- value. A value's count here may be negative; with the hour bins it is not.
    SELECT u.v, sum(u.n) AS n
    FROM (
        SELECT p.processing_time_ms AS v, p.validations AS n
        FROM pending p
        WHERE p.processing_time_ms IS NOT NULL
        UNION ALL
        SELECT r.processing_time_ms, r.sign
        FROM raw r
        WHERE r.processing_time_ms IS NOT NULL
    ) AS u
    GROUP BY u.v
), hours AS MATERIALIZED (
    -- The window's whole hours (rollup_totals_hour: one row per hour with rows), read once for
    -- the totals and as the list of hours whose chosen bins' values are read.
    SELECT t.bucket, t.total, t.timed, t.time_sum, t.score_sum, t.below_95, t.below_90
    FROM rollup_totals_hour t, span s
    WHERE t.tenant_id = p_tenant AND t.bucket >= s.hours_from
), totals AS (
    SELECT sum(u.total) AS total, sum(u.timed) AS timed, sum(u.time_sum) AS time_sum,
           sum(u.score_sum) AS score_sum, sum(u.below_95) AS below_95,
           sum(u.below_90) AS below_90
    FROM (
        SELECT h.total, h.timed, h.time_sum, h.score_sum, h.below_95, h.below_90
        FROM hours h
        UNION ALL
        SELECT p.validations,
               CASE WHEN p.processing_time_ms IS NULL THEN 0 ELSE p.validations END,
               coalesce(p.processing_time_ms::numeric * p.validations, 0),
               p.score_sum, p.below_95, p.below_90
        FROM pending p
        UNION ALL
        SELECT coalesce(sum(r.sign), 0),
               coalesce(sum(r.sign) FILTER (WHERE r.processing_time_ms IS NOT NULL), 0),
               coalesce(sum(r.sign * r.processing_time_ms), 0),
               sum(r.sign * r.compliance_score),
               coalesce(sum(r.sign) FILTER (WHERE r.compliance_score < 0.95), 0),
               coalesce(sum(r.sign) FILTER (WHERE r.compliance_score < 0.90), 0)
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
        WHERE b.tenant_id = p_tenant AND b.bucket >= s.hours_from
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
), chosen_bins AS (
    SELECT DISTINCT tb.bin FROM target_bins tb
), bin_values AS MATERIALIZED (
    -- The chosen bins' values: from the rollup, one key range per (hour, chosen bin) of the
    -- window (not by value across every bucket the rollup keeps), plus the edge's.
    SELECT x.bin, x.v, sum(x.n) AS n
    FROM (
        SELECT cb.bin, r.v, r.n
        FROM chosen_bins cb
        CROSS JOIN hours h
        CROSS JOIN LATERAL (
            -- OFFSET 0 keeps this a scan per (bin, hour): joined freely, the planner may
            -- read the bins' values by validation_rollup_value across every bucket instead.
            SELECT r.processing_time_ms AS v, r.validations AS n
            FROM validation_rollup r
            WHERE r.tenant_id = p_tenant
              AND r.bucket = h.bucket
              AND r.processing_time_ms >= rollup_hour_bin_lo(cb.bin)
              AND r.processing_time_ms < rollup_hour_bin_lo(cb.bin + 1)
            OFFSET 0
        ) AS r
        UNION ALL
        SELECT cb.bin, e.v, e.n
        FROM chosen_bins cb
        JOIN edge_v e
          ON e.v >= rollup_hour_bin_lo(cb.bin) AND e.v < rollup_hour_bin_lo(cb.bin + 1)
    ) AS x
    GROUP BY x.bin, x.v
    HAVING sum(x.n) <> 0
), verified AS (
    -- The bins are complete, and each chosen bin's values add up to its count.
    SELECT b.complete
           AND NOT EXISTS (
               SELECT 1
               FROM chosen_bins cb
               JOIN bins c ON c.bin = cb.bin
               WHERE c.n IS DISTINCT FROM (SELECT sum(bv.n) FROM bin_values bv
                                            WHERE bv.bin = cb.bin)
           ) AS ok
    FROM binned b
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
    -- v3's pass over every (hour, value) pair: read only when the bins fail the checks.
    SELECT u.v, sum(u.n) AS n
    FROM (
        SELECT r.processing_time_ms AS v, r.validations AS n
        FROM validation_rollup r, span s
        WHERE r.tenant_id = p_tenant AND r.bucket >= s.hours_from
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
    SELECT p.k, p.at, p.lo, p.hi FROM pct p, verified b WHERE b.ok
    UNION ALL
    SELECT p.k, p.at, p.lo, p.hi FROM per_value_pct p, verified b WHERE NOT b.ok
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
END;

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
SELECT * FROM tenant_metrics_24h_at(p_tenant, now());
END;
