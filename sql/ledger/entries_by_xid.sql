-- Ledger entries from a transaction id on, in block order (xid, entry_id).
SELECT entry_id, xid::text::bigint, kind, row_count, min_id, max_id, ids::text, rows_digest,
       partition, bounds, logged_at
FROM ledger_entries
WHERE xid >= %(from_xid)s::text::xid8
ORDER BY xid, entry_id
