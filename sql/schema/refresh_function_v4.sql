-- refresh_tenant_metrics_24h() since migration 0014: fold the pending deltas of the buckets the
-- 24-hour window needs (from rollup_window_line() on), then refresh. Older deltas (a backfill)
-- stay pending for fold_rollup_backlog()'s slices: the view reads only the window, and the
-- ranged metrics read pending deltas too, so every figure stays exact meanwhile.
-- One refresh at a time across every process and host: the row 'refresh' of the owner-only
-- table acgs_exclusive, locked FOR UPDATE SKIP LOCKED (the loser returns false at once). Only
-- the owner can lock that row, and only the roles granted EXECUTE on this function can make
-- the owner lock it, so no other login can make refreshes skip (an advisory-lock key, which
-- any login can take, could). Plain REFRESH while unpopulated, CONCURRENTLY after, so readers
-- are never blocked.
CREATE OR REPLACE FUNCTION refresh_tenant_metrics_24h() RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path FROM CURRENT
-- The view's plan is estimated far above its cost (one per-tenant subplan per estimated
-- tenant), which would make JIT compile it: measured 1.35 s of compilation for a 71 ms query.
SET jit = off
AS $fn$
BEGIN
    PERFORM 1 FROM acgs_exclusive WHERE name = 'refresh' FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM rollup_fold_range(rollup_window_line(), 'infinity');
    IF (SELECT relispopulated FROM pg_class
        WHERE oid = 'tenant_constitutional_metrics_24h'::regclass) THEN
        REFRESH MATERIALIZED VIEW CONCURRENTLY tenant_constitutional_metrics_24h;
    ELSE
        REFRESH MATERIALIZED VIEW tenant_constitutional_metrics_24h;
    END IF;
    RETURN true;
END
$fn$
