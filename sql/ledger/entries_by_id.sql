-- Insert (and backfill) entries whose ids reach a given id, by their lowest id: the order in
-- which a scan of the rows by id meets them.
SELECT entry_id, xid::text::bigint, kind, row_count, min_id, max_id, ids::text, rows_digest,
       partition, bounds, logged_at
FROM ledger_entries
WHERE kind <> 'drop' AND max_id >= %(from_id)s
ORDER BY min_id, entry_id
