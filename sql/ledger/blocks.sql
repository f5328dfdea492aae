-- Every block from a block id on, in chain order.
SELECT block_id, prev_hash, merkle_root, xid_lo::text::bigint, xid_hi::text::bigint,
       entry_count, row_count, sealed_at, block_hash
FROM ledger_blocks
WHERE block_id >= %(from_block)s
ORDER BY block_id
