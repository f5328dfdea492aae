-- One tenant's figures over [p_since, p_until), exactly as the seed's aggregate SQL computes them
-- over the same rows (seed 000's SELECT with `created_at >= p_since AND created_at < p_until`
-- for this tenant), from
--   * validation_rollup and the pending validation_rollup_delta for the whole hour buckets
--     [wf, wt) inside the range (index-only scans of the rollup key), and
--   * the raw rows of the partial hours at both edges, [p_since, wf) and [wt, p_until)
--     (index-only range scans of idx_constitutional_validations_tenant_hash_time).
-- wf is the first bucket boundary >= p_since, wt the last one <= p_until; when the range holds
-- no whole bucket (wf > wt) the two raw ranges together are exactly [p_since, p_until).
-- p_until NULL means no upper bound (rows stamped in the future count, as in the 24-hour view).
-- Deletes and updates are in the rollup as negative deltas (validation_rollup_capture()), so
-- the figures stay exact for them too.
--
-- The totals (count, sums, failed, violations) are one plain aggregate over the inputs; the
-- per-value pass that rebuilds PERCENTILE_CONT sums only bigint counts of timed rows (no
-- numeric sums per value), with the same float8 arithmetic PostgreSQL uses, as in
-- tenant_metrics_24h(). Plain SQL with an SQL-standard body (names bound at creation) and no
-- SET clause, so callers get it inlined and planned with their parameters.
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
WITH span AS (
    SELECT p_since AS since,
           coalesce(p_until, 'infinity'::timestamptz) AS until,
           CASE WHEN rollup_bucket(p_since) = p_since THEN p_since
                ELSE rollup_bucket(p_since) + rollup_width() END AS wf,
           CASE WHEN p_until IS NULL THEN 'infinity'::timestamptz
                ELSE rollup_bucket(p_until) END AS wt
), counts AS MATERIALIZED (
    SELECT r.processing_time_ms, r.validations AS n, r.score_sum, r.below_95, r.below_90
    FROM validation_rollup r, span s
    WHERE r.tenant_id = p_tenant AND r.bucket >= s.wf AND r.bucket < s.wt
    UNION ALL
    SELECT d.processing_time_ms, d.validations, d.score_sum, d.below_95, d.below_90
    FROM validation_rollup_delta d, span s
    WHERE d.tenant_id = p_tenant AND d.bucket >= s.wf AND d.bucket < s.wt
    UNION ALL
    SELECT v.processing_time_ms, 1, v.compliance_score,
           (v.compliance_score < 0.95)::int, (v.compliance_score < 0.90)::int
    FROM constitutional_validations v, span s
    WHERE v.tenant_id = p_tenant
      AND v.constitutional_hash = 'cdd01ef066bc6cf2'
      AND v.created_at >= s.since
      AND v.created_at < least(s.wf, s.until)
    UNION ALL
    SELECT v.processing_time_ms, 1, v.compliance_score,
           (v.compliance_score < 0.95)::int, (v.compliance_score < 0.90)::int
    FROM constitutional_validations v, span s
    WHERE v.tenant_id = p_tenant
      AND v.constitutional_hash = 'cdd01ef066bc6cf2'
      AND v.created_at >= greatest(s.wt, s.wf)
      AND v.created_at < s.until
), totals AS (
    SELECT sum(n) AS total,
           sum(n) FILTER (WHERE processing_time_ms IS NOT NULL) AS timed,
           sum(processing_time_ms::bigint * n) AS time_sum,
           sum(score_sum) AS score_sum, sum(below_95) AS below_95, sum(below_90) AS below_90
    FROM counts
), per_value AS (
    SELECT processing_time_ms AS v, sum(n) AS n
    FROM counts
    WHERE processing_time_ms IS NOT NULL
    GROUP BY processing_time_ms
    HAVING sum(n) <> 0
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
