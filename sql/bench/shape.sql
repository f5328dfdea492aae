-- What a benchmark needs to know of the loaded data, cheaply: the first and last tenant ids
-- and the first tenant's last decision id (min/max through the primary key's index, one
-- short index scan per partition), the row count as estimated by ANALYZE (pg_class, no scan),
-- the number of cache entries and the server's version.
WITH bounds AS (
    SELECT min(tenant_id) AS first_tenant, max(tenant_id) AS last_tenant
    FROM constitutional_validations
)
SELECT b.first_tenant,
       b.last_tenant,
       (SELECT max(v.decision_id) FROM constitutional_validations v
         WHERE v.tenant_id = b.first_tenant) AS last_decision,
       (SELECT coalesce(sum(greatest(c.reltuples, 0)), 0)::bigint
          FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'constitutional_validations'::regclass) AS estimated_rows,
       (SELECT count(*) FROM decision_validation_cache) AS cache_entries,
       current_setting('server_version') AS server_version
FROM bounds b
