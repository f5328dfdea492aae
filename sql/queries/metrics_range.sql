-- A tenant's figures over [$2, $3), computed right now by tenant_metrics_range() (rollup +
-- pending deltas for whole hours, raw rows for the partial edge hours); inlined into this
-- statement, so one prepared generic plan serves every range.
SELECT 'range'::text AS source, m.*
FROM tenant_metrics_range($1, $2, $3) AS m
