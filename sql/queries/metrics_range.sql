-- A tenant's figures over [$2, $3), computed right now by tenant_metrics_range() (rollup, bins
-- and pending deltas for whole hours, raw rows for the partial edge hours), through its
-- session-planned wrapper (sql/schema/metrics_planned_v1.sql): one generic plan per session
-- serves every tenant and range.
SELECT 'range'::text AS source, m.*
FROM tenant_metrics_range_planned($1, $2, $3) AS m
