-- Prepared transactions of multi-connection bulk inserts (gid acgs_db:<token>:<part>) older
-- than $1, with whether their batch was decided (its ledger row, written by part 0, is
-- committed).
SELECT p.gid, split_part(p.gid, ':', 2)::uuid AS token, split_part(p.gid, ':', 3)::int AS part,
       EXISTS (SELECT 1 FROM ingest_batches b WHERE b.token = split_part(p.gid, ':', 2)::uuid)
           AS decided
FROM pg_prepared_xacts p
WHERE p.gid LIKE 'acgs_db:%'
  AND p.database = current_database()
  AND p.prepared < now() - $1::interval
ORDER BY token, part
