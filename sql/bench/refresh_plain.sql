-- The plain refresh, readers blocked meanwhile (the baseline).
REFRESH MATERIALIZED VIEW tenant_constitutional_metrics_24h
