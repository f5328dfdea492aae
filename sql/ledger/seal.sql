-- Seal the final ledger entries into a block (no row: nothing final yet).
SELECT block_id, entry_count, row_count, block_hash FROM ledger_seal()
