-- Populate the 24-hour view (a plain refresh: CONCURRENTLY needs it populated).
REFRESH MATERIALIZED VIEW tenant_constitutional_metrics_24h
