-- refresh_tenant_metrics_24h() with the rollup (migration 0003): fold the pending deltas,
-- then refresh. One refresh at a time across every process and host (transaction-scoped
-- advisory lock; the loser returns false at once); plain REFRESH while unpopulated,
-- CONCURRENTLY after, so readers are never blocked.
CREATE OR REPLACE FUNCTION refresh_tenant_metrics_24h() RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path FROM CURRENT
-- The view's plan is estimated far above its cost (one per-tenant subplan per estimated
-- tenant), which would make JIT compile it: measured 1.35 s of compilation for a 71 ms query.
SET jit = off
AS $fn$
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtextextended('acgs_db.refresh:' || current_schema(), 0)) THEN
        RETURN false;
    END IF;
    PERFORM fold_validation_rollup();
    IF (SELECT relispopulated FROM pg_class
        WHERE oid = 'tenant_constitutional_metrics_24h'::regclass) THEN
        REFRESH MATERIALIZED VIEW CONCURRENTLY tenant_constitutional_metrics_24h;
    ELSE
        REFRESH MATERIALIZED VIEW tenant_constitutional_metrics_24h;
    END IF;
    RETURN true;
END
$fn$
