-- The figures over [$1, $2) of the tenant bound to this tenant login (SECURITY DEFINER: tenant
-- logins may not read the rollup).
SELECT 'range'::text AS source, m.*
FROM current_tenant_metrics_range($1, $2) AS m
