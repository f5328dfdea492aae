-- Capture variant "invalidation log" (the alternative considered, scratch databases only): a
-- statement-level trigger logs the lowest and highest created_at per tenant per statement; a
-- fold would then recompute the buckets those ranges touch from the raw rows.
ALTER TABLE constitutional_validations DISABLE TRIGGER constitutional_validations_rollup_insert;
CREATE TABLE IF NOT EXISTS bench_invalidation_log (
    tenant_id varchar(50) NOT NULL,
    lowest timestamptz NOT NULL,
    highest timestamptz NOT NULL
);
CREATE OR REPLACE FUNCTION bench_log_invalidation() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO bench_invalidation_log
    SELECT tenant_id, min(created_at), max(created_at) FROM new_rows GROUP BY tenant_id;
    RETURN NULL;
END
$fn$;
DROP TRIGGER IF EXISTS bench_invalidation_log ON constitutional_validations;
CREATE TRIGGER bench_invalidation_log AFTER INSERT ON constitutional_validations
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION bench_log_invalidation();
