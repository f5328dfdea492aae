-- One tenant's figures over the last 24 hours, exactly as the seed's SQL computes them, from
--   * validation_rollup and the pending validation_rollup_delta for whole hour buckets, and
--   * the raw rows of the partial bucket at the window's edge (an index-only range scan of
--     idx_constitutional_validations_tenant_hash_time).
-- processing_time_ms is an integer, so PERCENTILE_CONT is rebuilt from counts per value with
-- the same float8 arithmetic PostgreSQL uses (lo + (hi - lo) * fraction at 0-based rank
-- p * (n - 1)); averages are the same numeric divisions AVG performs.
-- A plain SQL function (no SET clause), so callers get it inlined and planned with their
-- tenant parameter; the view calls it once per tenant.
-- Since migration 0007 the body is SQL-standard (BEGIN ATOMIC): its names are resolved when
-- the function is created, not when it runs, so neither a caller's search_path nor the one
-- PostgreSQL 17 imposes during REFRESH MATERIALIZED VIEW (pg_catalog, pg_temp) can change what
-- it reads, and PostgreSQL still inlines it.
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
), counts AS (
    SELECT r.processing_time_ms, r.validations AS n, r.score_sum, r.below_95, r.below_90
    FROM validation_rollup r, span s
    WHERE r.tenant_id = p_tenant AND r.bucket >= s.whole_from
    UNION ALL
    SELECT d.processing_time_ms, d.validations, d.score_sum, d.below_95, d.below_90
    FROM validation_rollup_delta d, span s
    WHERE d.tenant_id = p_tenant AND d.bucket >= s.whole_from
    UNION ALL
    SELECT v.processing_time_ms, 1, v.compliance_score,
           (v.compliance_score < 0.95)::int, (v.compliance_score < 0.90)::int
    FROM constitutional_validations v, span s
    WHERE v.tenant_id = p_tenant
      AND v.constitutional_hash = 'cdd01ef066bc6cf2'
      AND v.created_at >= s.since
      AND v.created_at < s.whole_from
), per_value AS (
    SELECT processing_time_ms, sum(n) AS n, sum(score_sum) AS score_sum,
           sum(below_95) AS below_95, sum(below_90) AS below_90
    FROM counts
    GROUP BY processing_time_ms
    HAVING sum(n) > 0
), totals AS (
    SELECT sum(n) AS total,
           sum(n) FILTER (WHERE processing_time_ms IS NOT NULL) AS timed,
           sum(processing_time_ms::numeric * n) AS time_sum,
           sum(score_sum) AS score_sum, sum(below_95) AS below_95, sum(below_90) AS below_90
    FROM per_value
), ranks AS (
    SELECT 0.95::float8 * (timed - 1)::float8 AS at95, 0.99::float8 * (timed - 1)::float8 AS at99
    FROM totals
), cumulative AS (
    SELECT processing_time_ms AS v, sum(n) OVER (ORDER BY processing_time_ms) AS upto
    FROM per_value
    WHERE processing_time_ms IS NOT NULL
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
       t.time_sum / t.timed,
       p.lo95::float8 + (p.hi95::float8 - p.lo95::float8) * (r.at95 - floor(r.at95)),
       p.lo99::float8 + (p.hi99::float8 - p.lo99::float8) * (r.at99 - floor(r.at99)),
       t.below_90::bigint,
       now()
FROM totals t, ranks r, picked p
WHERE t.total > 0;
END
