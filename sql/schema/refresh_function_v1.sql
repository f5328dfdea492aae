-- refresh_tenant_metrics_24h() as migration 0001 creates it (and 0003's downgrade restores it).
-- One refresh at a time across every process and host: a transaction-scoped advisory lock,
-- the loser returns false at once. Plain REFRESH while unpopulated, CONCURRENTLY after.
CREATE OR REPLACE FUNCTION refresh_tenant_metrics_24h() RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path FROM CURRENT
AS $fn$
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtextextended('acgs_db.refresh:' || current_schema(), 0)) THEN
        RETURN false;
    END IF;
    IF (SELECT relispopulated FROM pg_class
        WHERE oid = 'tenant_constitutional_metrics_24h'::regclass) THEN
        REFRESH MATERIALIZED VIEW CONCURRENTLY tenant_constitutional_metrics_24h;
    ELSE
        REFRESH MATERIALIZED VIEW tenant_constitutional_metrics_24h;
    END IF;
    RETURN true;
END
$fn$
