-- Partitions dropped by retention (or otherwise), as the ledger recorded them.
SELECT entry_id, xid::text::bigint, kind, row_count, min_id, max_id, ids::text, rows_digest,
       partition, bounds, logged_at
FROM ledger_entries
WHERE kind = 'drop'
ORDER BY entry_id
