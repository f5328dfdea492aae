-- The tenant's 24-hour figures computed right now, for a tenant-scoped role (tenant from
-- acgs.tenant_id); used when the view is not populated.
SELECT 'realtime'::text AS source, m.*
FROM current_tenant_metrics_24h() AS m
