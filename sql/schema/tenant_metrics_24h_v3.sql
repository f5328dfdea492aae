-- One tenant's figures over the last 24 hours, exactly as the seed's SQL computes them (v3,
-- migration 0011). As v2 (tenant_metrics_24h_v2.sql), from the whole hour buckets of the window
-- and the raw rows of the partial bucket at its edge, but the totals (count, sums, failed,
-- violations) come from rollup_totals_hour (one row per hour, kept by the fold) plus the
-- pending deltas and the edge rows, so the per-value pass that rebuilds PERCENTILE_CONT sums
-- bigint counts of timed rows only (no numeric sums per value).
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
), per_value AS (
    SELECT u.v, sum(u.n) AS n
    FROM (
        SELECT r.processing_time_ms AS v, r.validations AS n
        FROM validation_rollup r, span s
        WHERE r.tenant_id = p_tenant AND r.bucket >= s.whole_from
          AND r.processing_time_ms IS NOT NULL
        UNION ALL
        SELECT p.processing_time_ms, p.validations
        FROM pending p
        WHERE p.processing_time_ms IS NOT NULL
        UNION ALL
        SELECT r.processing_time_ms, 1
        FROM raw r
        WHERE r.processing_time_ms IS NOT NULL
    ) AS u
    GROUP BY u.v
    HAVING sum(u.n) <> 0
), ranks AS (
    SELECT 0.95::float8 * (nullif(timed, 0) - 1)::float8 AS at95,
           0.99::float8 * (nullif(timed, 0) - 1)::float8 AS at99
    FROM totals
), cumulative AS (
    SELECT v, sum(n) OVER (ORDER BY v) AS upto
    FROM per_value
), picked AS (
    SELECT min(c.v) FILTER (WHERE c.upto > floor(r.at95)) AS lo95,
           min(c.v) FILTER (WHERE c.upto > ceil(r.at95)) AS hi95,
           min(c.v) FILTER (WHERE c.upto > floor(r.at99)) AS lo99,
           min(c.v) FILTER (WHERE c.upto > ceil(r.at99)) AS hi99
    FROM cumulative c, ranks r
)
SELECT p_tenant,
       'cdd01ef066bc6cf2'::varchar,
       t.score_sum / t.total,
       t.total::bigint,
       t.below_95::bigint,
       t.time_sum / nullif(t.timed, 0),
       p.lo95::float8 + (p.hi95::float8 - p.lo95::float8) * (r.at95 - floor(r.at95)),
       p.lo99::float8 + (p.hi99::float8 - p.lo99::float8) * (r.at99 - floor(r.at99)),
       t.below_90::bigint,
       now()
FROM totals t, ranks r, picked p
WHERE t.total > 0;
END
