-- The view's refresh without blocking readers (what refresh_tenant_metrics_24h() runs).
REFRESH MATERIALIZED VIEW CONCURRENTLY tenant_constitutional_metrics_24h
