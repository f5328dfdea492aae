-- What the refresher runs: it creates and drops a temporary table, so DROP TABLE event
-- triggers fire once per refresh.
REFRESH MATERIALIZED VIEW CONCURRENTLY tenant_constitutional_metrics_24h
