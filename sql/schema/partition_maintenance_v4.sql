-- acgs_partition_maintenance() since migration 0013: as v3, and every step that may create or
-- drop partitions (the move, pg_partman's maintenance) then hands the new partitions to the
-- owner with their statistics (acgs_partition_statistics()) and rewrites the history look-up
-- acgs_history() for the partitions as they now are (acgs_history_compile()), in the same
-- transaction: no session ever calls a look-up naming a partition that is gone, or missing
-- one that holds rows. v3's description follows.
--
-- acgs_partition_maintenance() since migration 0008: as v2 (move the rows stranded in the
-- default partition, pg_partman's maintenance, then acgs_partition_statistics()), every step
-- under lock_timeout and retried:
--
-- * p_lock_timeout bounds each wait for a table lock (set here, so pg_cron and psql runs are
--   bounded too): behind a long-running reader a step gives up after that long instead of
--   queueing with every later reader and writer queued behind it. It is tried again, in a new
--   transaction, after an exponential backoff with jitter (pg_sleep), up to p_retries times;
--   the last failure raises lock_not_available naming the sessions that hold locks on the
--   parent or its partitions (pid, application_name, state, transaction age, mode, relation).
-- * pg_partman's maintenance is partman.run_maintenance(<this parent>) (a function: its
--   advisory lock is transaction-scoped, so a failed run keeps nothing, and it maintains this
--   partition set only), not run_maintenance_proc() (a session-level lock kept on failure;
--   every partition set of the database).
-- * rows are moved out of the default partition one partition per transaction
--   (partman.partition_data_time(..., p_batch_count => 1)), under partition_data_proc's
--   advisory lock so that concurrent movers of this parent do not collide.
-- * it refuses to run when pg_partman's retention of the parent is shorter than 28 days
--   (defence in depth: a retention of '13' once meant 13 seconds, and maintenance would then
--   drop every partition).
--
-- It COMMITs between steps, so it must be CALLed outside a transaction block; PostgreSQL forbids
-- COMMIT inside a block with an EXCEPTION clause, hence the retry loop around the block.
-- NOTICEs: one per retry, and 'acgs_partition_maintenance: lock retries: N' at the end.
-- (No percent sign in here: Alembic's offline rendering would double it.)
CREATE OR REPLACE PROCEDURE acgs_partition_maintenance(
    p_parent regclass DEFAULT 'constitutional_validations'::regclass,
    p_lock_timeout interval DEFAULT interval '2 seconds',
    p_retries integer DEFAULT 5
)
LANGUAGE plpgsql
AS $proc$
DECLARE
    parent text;
    home text;
    default_table text;
    kept text;
    timeout_ms text;
    step text;
    attempt integer;
    retries_used integer := 0;
    done boolean;
    more boolean;
    stranded boolean;
    moved bigint;
    delay double precision;
    failure text;
    failure_state text;
    blockers text;
BEGIN
    IF p_lock_timeout IS NULL OR p_lock_timeout <= interval '0'
       OR p_lock_timeout > interval '1 minute' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'p_lock_timeout must lie above 0 and at most 1 minute, not '
                      || coalesce(p_lock_timeout::text, 'NULL');
    END IF;
    IF p_retries IS NULL OR p_retries < 0 THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'p_retries must be 0 or more, not ' || coalesce(p_retries::text, 'NULL');
    END IF;
    timeout_ms := ceil(extract(epoch FROM p_lock_timeout) * 1000)::bigint::text || 'ms';

    SELECT n.nspname || '.' || c.relname, quote_ident(n.nspname) INTO STRICT parent, home
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = p_parent;
    SELECT retention INTO kept FROM partman.part_config WHERE parent_table = parent;
    IF kept IS NOT NULL AND kept::interval < interval '28 days' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'refusing to maintain ' || parent || ': its pg_partman retention is '
                      || kept || ', shorter than 28 days; retention would drop partitions'
                      || ' that are still being written',
            HINT = 'Set partman.part_config.retention for ' || parent
                   || ' to the intended interval (ACGS_RETENTION, e.g. 13 months).';
    END IF;
    SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) INTO default_table
      FROM pg_inherits i
      JOIN pg_class c ON c.oid = i.inhrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE i.inhparent = p_parent
       AND pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT';

    FOREACH step IN ARRAY ARRAY['move', 'maintain', 'statistics'] LOOP
        attempt := 0;
        LOOP  -- one transaction per pass: a batch of the move, or one try of a step
            done := false;
            more := false;
            BEGIN
                PERFORM set_config('lock_timeout', timeout_ms, true);
                IF step = 'move' THEN
                    IF default_table IS NOT NULL THEN
                        EXECUTE 'SELECT EXISTS (SELECT 1 FROM ONLY ' || default_table || ')'
                           INTO stranded;
                        IF stranded THEN
                            -- partition_data_proc's own lock: one mover per parent at a time.
                            IF pg_try_advisory_xact_lock(
                                   hashtext('pg_partman partition_data_proc'), hashtext(parent)) THEN
                                -- The rows of one partition: into a new partition, committed.
                                moved := partman.partition_data_time(
                                    parent, p_batch_count => 1, p_analyze => false);
                                more := coalesce(moved, 0) > 0;
                                EXECUTE 'SELECT ' || home || '.acgs_partition_statistics($1), '
                                     || home || '.acgs_history_compile($1)' USING p_parent;
                            ELSE
                                RAISE NOTICE USING MESSAGE =
                                    'partition_data_proc already running for ' || parent
                                    || ' in another session: the rows of its default partition'
                                    || ' are left to it';
                            END IF;
                        END IF;
                    END IF;
                ELSIF step = 'maintain' THEN
                    -- Premade partitions and retention of this partition set only.
                    PERFORM partman.run_maintenance(parent, p_analyze => false, p_jobmon => false);
                    EXECUTE 'SELECT ' || home || '.acgs_partition_statistics($1), '
                         || home || '.acgs_history_compile($1)' USING p_parent;
                ELSE
                    -- Planner statistics for the partitions just made (migration 0006; the
                    -- function lives beside the table, no search_path is pinned here).
                    EXECUTE 'SELECT ' || home || '.acgs_partition_statistics($1)' USING p_parent;
                END IF;
                done := true;
            EXCEPTION WHEN lock_not_available OR raise_exception THEN
                -- pg_partman re-raises a lock timeout as P0001 with the original message.
                GET STACKED DIAGNOSTICS failure = MESSAGE_TEXT, failure_state = RETURNED_SQLSTATE;
                IF failure_state <> '55P03' AND position('due to lock timeout' IN failure) = 0 THEN
                    RAISE;
                END IF;
                IF attempt >= p_retries THEN
                    SELECT string_agg(who, '; ' ORDER BY pid) INTO blockers
                      FROM (SELECT l.pid,
                                   'pid ' || l.pid || ' '
                                   || quote_literal(coalesce(max(a.application_name), '')) || ' '
                                   || coalesce(max(a.state), 'unknown state') || ', transaction '
                                   || coalesce(round(extract(epoch FROM clock_timestamp()
                                                     - max(a.xact_start))::numeric, 1)::text
                                               || ' s old', 'age unknown')
                                   || ', holding '
                                   || string_agg(DISTINCT l.mode || ' on '
                                                 || l.relation::regclass::text, ', ') AS who
                              FROM pg_locks l
                              LEFT JOIN pg_stat_activity a ON a.pid = l.pid
                             WHERE l.locktype = 'relation'
                               AND l.granted
                               AND l.pid <> pg_backend_pid()
                               AND l.database = (SELECT oid FROM pg_database
                                                  WHERE datname = current_database())
                               AND (l.relation = p_parent
                                    OR l.relation IN (SELECT inhrelid FROM pg_inherits
                                                       WHERE inhparent = p_parent))
                             GROUP BY l.pid) s;
                    RAISE EXCEPTION USING
                        ERRCODE = 'lock_not_available',
                        MESSAGE = 'partition maintenance of ' || parent || ' (' || step
                                  || ') gave up after ' || (attempt + 1) || ' attempts: each'
                                  || ' waited ' || timeout_ms || ' (lock_timeout) for a lock;'
                                  || ' sessions holding locks on it: '
                                  || coalesce(blockers, 'none any more'),
                        HINT = 'End those sessions or wait for them, then run it again;'
                               || ' p_lock_timeout and p_retries (ACGS_LOCK_TIMEOUT,'
                               || ' ACGS_LOCK_RETRIES) bound each wait and the tries.';
                END IF;
            END;
            COMMIT;
            IF done THEN
                EXIT WHEN NOT more;
                attempt := 0;  -- the next batch of the move gets retries of its own
            ELSE
                attempt := attempt + 1;
                retries_used := retries_used + 1;
                delay := least(10.0, 0.25 * 2 ^ (attempt - 1)) * (0.5 + random());
                RAISE NOTICE USING MESSAGE =
                    'acgs_partition_maintenance: ' || step || ' of ' || parent || ' waited '
                    || timeout_ms || ' for a lock (attempt ' || attempt || ' of '
                    || (p_retries + 1) || '); retrying in ' || round(delay::numeric, 2) || ' s';
                PERFORM pg_sleep(delay);
            END IF;
        END LOOP;
    END LOOP;
    RAISE NOTICE USING MESSAGE = 'acgs_partition_maintenance: lock retries: ' || retries_used;
END
$proc$
