-- The fold, v6 (migration 0016): as v5 (rollup_fold_v5.sql), and the same statement keeps
-- rollup_bins_day_coarse too (counts of timed rows per tenant, day and rollup_hour_bin() of the
-- time: eight day bins in one), where tenant_metrics_range() v3 places its percentile ranks
-- before it reads the day bins of the one or two coarse bins that hold them.
--
-- rollup_fold_range(p_from, p_until) folds the pending deltas of buckets in [p_from, p_until)
-- into validation_rollup, rollup_totals_hour, rollup_bins_day, rollup_bins_day_coarse and
-- rollup_bins_hour in one statement, and returns how many delta rows it folded. Exactly once:
-- folds are serialised by the row 'fold' of the owner-only acgs_exclusive (migration 0007),
-- taken before the DELETE's snapshot, and each delta row is deleted by the one fold that adds
-- it, in its transaction; deltas committed after that snapshot stay for a later fold. The range
-- is read through the index validation_rollup_delta_bucket, so a fold of the window never reads
-- the rows (live or dead) of older buckets. Its statements are planned generically
-- (plan_cache_mode): the plan must not follow the statistics of the delta table, which are
-- stale right after a backfill (a custom plan then estimated every delta row in the window and
-- scanned them all).
--
-- rollup_drop_retired() removes the buckets of partitions that retention dropped (unless rows
-- of them still wait in the default partition), from the day bins (fine and coarse) and the
-- hour bins too.
--
-- fold_validation_rollup() folds every pending delta, whatever its bucket, then drops retired
-- buckets: v3's behaviour, kept for maintenance, tests and operators.
CREATE OR REPLACE FUNCTION rollup_fold_range(p_from timestamptz, p_until timestamptz)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path FROM CURRENT
SET plan_cache_mode = force_generic_plan
AS $fn$
DECLARE
    folded bigint;
    emptied_tenants varchar[];
    emptied_buckets timestamptz[];
    emptied_times integer[];
BEGIN
    PERFORM 1 FROM acgs_exclusive WHERE name = 'fold' FOR UPDATE;

    WITH moved AS (
        DELETE FROM validation_rollup_delta
        WHERE bucket >= p_from AND bucket < p_until
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
    ), totals AS (
        INSERT INTO rollup_totals_hour AS t
            (tenant_id, bucket, total, timed, time_sum, score_sum, below_95, below_90)
        SELECT tenant_id, bucket, sum(validations),
               coalesce(sum(validations) FILTER (WHERE processing_time_ms IS NOT NULL), 0),
               coalesce(sum(processing_time_ms::numeric * validations), 0),
               sum(score_sum), sum(below_95), sum(below_90)
        FROM summed
        GROUP BY tenant_id, bucket
        ON CONFLICT (tenant_id, bucket) DO UPDATE
        SET total = t.total + EXCLUDED.total,
            timed = t.timed + EXCLUDED.timed,
            time_sum = t.time_sum + EXCLUDED.time_sum,
            score_sum = t.score_sum + EXCLUDED.score_sum,
            below_95 = t.below_95 + EXCLUDED.below_95,
            below_90 = t.below_90 + EXCLUDED.below_90
        RETURNING 1
    ), bins AS (
        INSERT INTO rollup_bins_day AS b (tenant_id, day, bin, n)
        SELECT tenant_id, date_bin(interval '1 day', bucket, timestamptz '2000-01-01 00:00:00+00'),
               rollup_bin(processing_time_ms), sum(validations)
        FROM summed
        WHERE processing_time_ms IS NOT NULL
        GROUP BY 1, 2, 3
        ON CONFLICT (tenant_id, day, bin) DO UPDATE SET n = b.n + EXCLUDED.n
        RETURNING 1
    ), day_coarse AS (
        INSERT INTO rollup_bins_day_coarse AS c (tenant_id, day, bin, n)
        SELECT tenant_id, date_bin(interval '1 day', bucket, timestamptz '2000-01-01 00:00:00+00'),
               rollup_hour_bin(processing_time_ms), sum(validations)
        FROM summed
        WHERE processing_time_ms IS NOT NULL
        GROUP BY 1, 2, 3
        ON CONFLICT (tenant_id, day, bin) DO UPDATE SET n = c.n + EXCLUDED.n
        RETURNING 1
    ), hour_bins AS (
        INSERT INTO rollup_bins_hour AS h (tenant_id, bucket, bin, n)
        SELECT tenant_id, bucket, rollup_hour_bin(processing_time_ms), sum(validations)
        FROM summed
        WHERE processing_time_ms IS NOT NULL
        GROUP BY 1, 2, 3
        ON CONFLICT (tenant_id, bucket, bin) DO UPDATE SET n = h.n + EXCLUDED.n
        RETURNING 1
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

    RETURN folded;
END
$fn$;

CREATE OR REPLACE FUNCTION rollup_drop_retired() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path FROM CURRENT
AS $fn$
DECLARE
    oldest timestamptz;
BEGIN
    PERFORM 1 FROM acgs_exclusive WHERE name = 'fold' FOR UPDATE;
    SELECT min(i.child_start_time) INTO oldest
    FROM partman.show_partitions(current_schema() || '.constitutional_validations', 'ASC') AS p
    CROSS JOIN LATERAL partman.show_partition_info(
        p.partition_schemaname || '.' || p.partition_tablename) AS i;
    IF oldest IS NOT NULL
       AND EXISTS (SELECT 1 FROM validation_rollup WHERE bucket < oldest) THEN
        oldest := least(oldest, (SELECT rollup_bucket(min(created_at))
                                 FROM constitutional_validations WHERE created_at < oldest));
        -- The day bins, fine and coarse, lose exactly the counts of the buckets dropped (a day
        -- may straddle).
        WITH gone AS (
            DELETE FROM validation_rollup WHERE bucket < oldest
            RETURNING tenant_id, bucket, processing_time_ms, validations
        ), per_bin AS (
            SELECT tenant_id,
                   date_bin(interval '1 day', bucket, timestamptz '2000-01-01 00:00:00+00') AS day,
                   rollup_bin(processing_time_ms) AS bin, sum(validations) AS n
            FROM gone
            WHERE processing_time_ms IS NOT NULL
            GROUP BY 1, 2, 3
        ), fine AS (
            UPDATE rollup_bins_day b SET n = b.n - p.n
            FROM per_bin p
            WHERE b.tenant_id = p.tenant_id AND b.day = p.day AND b.bin = p.bin
            RETURNING 1
        )
        UPDATE rollup_bins_day_coarse c SET n = c.n - p.n
        FROM (SELECT tenant_id, day, bin >> 3 AS bin, sum(n) AS n
                FROM per_bin GROUP BY 1, 2, 3) AS p
        WHERE c.tenant_id = p.tenant_id AND c.day = p.day AND c.bin = p.bin;
        DELETE FROM rollup_totals_hour WHERE bucket < oldest;
        DELETE FROM rollup_bins_hour WHERE bucket < oldest;
    END IF;
END
$fn$;

CREATE OR REPLACE FUNCTION fold_validation_rollup() RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path FROM CURRENT
AS $fn$
DECLARE
    folded bigint;
BEGIN
    folded := rollup_fold_range('-infinity', 'infinity');
    PERFORM rollup_drop_retired();
    RETURN folded;
END
$fn$;
