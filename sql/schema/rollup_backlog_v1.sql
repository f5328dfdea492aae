-- The backlog of the rollup (migration 0014): pending deltas of buckets older than what the
-- 24-hour window needs, which the refresh leaves to bounded slices.
--
-- rollup_window_line() is the oldest bucket the refresh folds: the bucket holding the window's
-- start, less one bucket of margin (a reader whose transaction began a little before the
-- refresh, so whose now() is earlier, still finds its whole window folded).
CREATE OR REPLACE FUNCTION rollup_window_line() RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE
RETURN rollup_bucket(now() - interval '24 hours') - rollup_width();

-- One slice of the backlog: the deltas of the p_buckets oldest hours below the line (from the
-- oldest pending bucket on; fewer when the line comes first), folded by rollup_fold_range();
-- then the buckets retention dropped go (rollup_drop_retired()). Returns the delta rows folded
-- (0: no backlog). Bounded: one slice holds the fold lock for p_buckets hours of deltas at
-- most, so a refresh waits for one slice at worst. The oldest pending bucket is the first live
-- entry of validation_rollup_delta_bucket (dead entries of earlier slices are marked killed by
-- the scans that meet them, then skipped without reading the heap).
CREATE OR REPLACE FUNCTION fold_rollup_backlog(p_buckets integer) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path FROM CURRENT
SET plan_cache_mode = force_generic_plan
AS $fn$
DECLARE
    line timestamptz := rollup_window_line();
    oldest timestamptz;
    folded bigint := 0;
BEGIN
    IF p_buckets IS NULL OR p_buckets < 1 THEN
        -- No placeholder in the message: Alembic's offline rendering would double it.
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'a backlog slice needs at least one bucket, not '
                      || coalesce(p_buckets::text, 'NULL');
    END IF;
    PERFORM 1 FROM acgs_exclusive WHERE name = 'fold' FOR UPDATE;
    SELECT min(d.bucket) INTO oldest FROM validation_rollup_delta d WHERE d.bucket < line;
    IF oldest IS NOT NULL THEN
        folded := rollup_fold_range(oldest, least(oldest + p_buckets * rollup_width(), line));
    END IF;
    PERFORM rollup_drop_retired();
    RETURN folded;
END
$fn$;

-- The backlog now: pending delta rows and buckets below the line, and the oldest of them
-- (NULL when there is none). Reads the backlog's entries of validation_rollup_delta_bucket only.
CREATE OR REPLACE FUNCTION rollup_backlog(
    OUT delta_rows bigint, OUT buckets bigint, OUT oldest_bucket timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path FROM CURRENT
BEGIN ATOMIC
SELECT count(*), count(DISTINCT d.bucket), min(d.bucket)
FROM validation_rollup_delta d
WHERE d.bucket < rollup_window_line();
END;
