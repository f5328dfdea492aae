-- Folds the pending deltas into validation_rollup and returns how many delta rows it folded.
-- Exactly once: each delta row is deleted by the one fold that adds it, in one transaction;
-- deltas committed after the fold's snapshot stay for the next fold. Folds are serialised by
-- the row 'fold' of the owner-only table acgs_exclusive (migration 0007: no other login can
-- lock it, so none can stall the fold as it could hold an advisory-lock key). Buckets older than the oldest partition (dropped by retention) go too,
-- unless rows of them still wait in the default partition.
CREATE OR REPLACE FUNCTION fold_validation_rollup() RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path FROM CURRENT
AS $fn$
DECLARE
    folded bigint;
    emptied_tenants varchar[];
    emptied_buckets timestamptz[];
    emptied_times integer[];
    oldest timestamptz;
BEGIN
    PERFORM 1 FROM acgs_exclusive WHERE name = 'fold' FOR UPDATE;

    WITH moved AS (
        DELETE FROM validation_rollup_delta
        RETURNING tenant_id, bucket, processing_time_ms, validations, score_sum, below_95, below_90
    ), summed AS (
        SELECT tenant_id, bucket, processing_time_ms,
               sum(validations) AS validations, sum(score_sum) AS score_sum,
               sum(below_95) AS below_95, sum(below_90) AS below_90, count(*) AS parts
        FROM moved
        GROUP BY tenant_id, bucket, processing_time_ms
    ), upserted AS (
        INSERT INTO validation_rollup AS r
            (tenant_id, bucket, processing_time_ms, validations, score_sum, below_95, below_90)
        SELECT tenant_id, bucket, processing_time_ms, validations, score_sum, below_95, below_90
        FROM summed
        ON CONFLICT (tenant_id, bucket, processing_time_ms) DO UPDATE
        SET validations = r.validations + EXCLUDED.validations,
            score_sum = r.score_sum + EXCLUDED.score_sum,
            below_95 = r.below_95 + EXCLUDED.below_95,
            below_90 = r.below_90 + EXCLUDED.below_90
        RETURNING r.tenant_id, r.bucket, r.processing_time_ms, r.validations
    )
    SELECT (SELECT coalesce(sum(parts), 0) FROM summed),
           array_agg(tenant_id) FILTER (WHERE validations = 0),
           array_agg(bucket) FILTER (WHERE validations = 0),
           array_agg(processing_time_ms) FILTER (WHERE validations = 0)
    INTO folded, emptied_tenants, emptied_buckets, emptied_times
    FROM upserted;

    -- Buckets whose rows were all deleted.
    IF emptied_tenants IS NOT NULL THEN
        DELETE FROM validation_rollup r
        USING unnest(emptied_tenants, emptied_buckets, emptied_times)
              AS e(tenant_id, bucket, processing_time_ms)
        WHERE r.tenant_id = e.tenant_id
          AND r.bucket = e.bucket
          AND r.processing_time_ms IS NOT DISTINCT FROM e.processing_time_ms
          AND r.validations = 0;
    END IF;

    -- Buckets of partitions that retention dropped.
    SELECT min(i.child_start_time) INTO oldest
    FROM partman.show_partitions(current_schema() || '.constitutional_validations', 'ASC') AS p
    CROSS JOIN LATERAL partman.show_partition_info(
        p.partition_schemaname || '.' || p.partition_tablename) AS i;
    IF oldest IS NOT NULL
       AND EXISTS (SELECT 1 FROM validation_rollup WHERE bucket < oldest) THEN
        oldest := least(oldest, (SELECT rollup_bucket(min(created_at))
                                 FROM constitutional_validations WHERE created_at < oldest));
        DELETE FROM validation_rollup WHERE bucket < oldest;
    END IF;

    RETURN folded;
END
$fn$
