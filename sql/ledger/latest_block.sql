-- The newest block: what an operator keeps outside the database.
SELECT block_id, block_hash, sealed_at, xid_hi FROM ledger_blocks ORDER BY block_id DESC LIMIT 1
