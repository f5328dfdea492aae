-- A standby's replay position in bytes from 0/0 (NULL when the server is not in recovery,
-- e.g. promoted: it then serves no read), and whether replay is paused (reported only).
SELECT CASE WHEN pg_is_in_recovery()
            THEN pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::bigint END AS replayed,
       pg_is_in_recovery() AND pg_is_wal_replay_paused() AS paused
