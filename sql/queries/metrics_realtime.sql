-- A tenant's 24-hour figures computed right now (used when the view is not populated).
SELECT 'realtime'::text AS source, m.*
FROM tenant_metrics_24h($1) AS m
