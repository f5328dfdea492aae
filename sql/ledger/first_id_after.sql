-- The lowest id of an entry written at or after a transaction id (where --since starts).
SELECT min(min_id) FROM ledger_entries WHERE kind <> 'drop' AND xid >= %(from_xid)s::text::xid8
