-- The primary's WAL write position, in bytes from 0/0: every commit acknowledged before this
-- statement started lies at or below it (a synchronous commit is written before it returns).
SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint
