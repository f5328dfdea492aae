-- On the primary: each streaming standby (by its application_name), how many bytes of WAL it
-- has still to replay, and its replay delay (0 when it has replayed everything written).
SELECT application_name,
       pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint AS behind_bytes,
       CASE WHEN replay_lsn >= pg_current_wal_lsn() THEN 0
            ELSE extract(epoch FROM replay_lag) END::float8 AS lag_seconds
FROM pg_stat_replication
