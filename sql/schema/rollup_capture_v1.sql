-- Statement-level capture of every insert, delete and update of constitutional_validations:
-- the statement's rows, counted per (tenant, hour bucket, processing_time_ms), are appended
-- to validation_rollup_delta in the writer's own transaction, so a delta exists exactly when
-- its rows are committed. Deletes count negatively; an update is a delete plus an insert.
-- SECURITY DEFINER: writers need no privilege on the rollup tables.
CREATE OR REPLACE FUNCTION validation_rollup_capture() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path FROM CURRENT
AS $fn$
BEGIN
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO validation_rollup_delta
            (tenant_id, bucket, processing_time_ms, validations, score_sum, below_95, below_90)
        SELECT tenant_id, rollup_bucket(created_at), processing_time_ms,
               count(*), sum(compliance_score),
               count(*) FILTER (WHERE compliance_score < 0.95),
               count(*) FILTER (WHERE compliance_score < 0.90)
        FROM new_rows
        GROUP BY 1, 2, 3;
    END IF;
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        INSERT INTO validation_rollup_delta
            (tenant_id, bucket, processing_time_ms, validations, score_sum, below_95, below_90)
        SELECT tenant_id, rollup_bucket(created_at), processing_time_ms,
               -count(*), -sum(compliance_score),
               -count(*) FILTER (WHERE compliance_score < 0.95),
               -count(*) FILTER (WHERE compliance_score < 0.90)
        FROM old_rows
        GROUP BY 1, 2, 3;
    END IF;
    RETURN NULL;
END
$fn$
