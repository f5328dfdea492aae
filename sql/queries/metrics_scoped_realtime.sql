-- The 24-hour figures of the tenant bound to this tenant login, computed right now; used when
-- the view is not populated.
SELECT 'realtime'::text AS source, m.*
FROM current_tenant_metrics_24h() AS m
