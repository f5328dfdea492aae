-- A tenant's 24-hour figures computed right now (used when the view is not populated), by
-- tenant_metrics_24h() through its session-planned wrapper (sql/schema/metrics_planned_v1.sql).
SELECT 'realtime'::text AS source, m.*
FROM tenant_metrics_24h_planned($1) AS m
