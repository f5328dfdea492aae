-- Seals the ledger entries that are final into a block chained to the previous one
-- (migration 0010). Final: written by a transaction whose id is below the oldest transaction
-- still running (pg_snapshot_xmin of the current snapshot, prepared transactions included).
-- Every transaction that could still add an entry below that bound has ended, so the set of
-- entries with xid in [previous block's xid_hi, bound) can never grow, whatever the commit
-- order; the block takes them in (xid, entry_id) order. Block hash: SHA-256 of prev_hash
-- (32 zero bytes for the first block) || merkle_root || block_id, xid_lo, xid_hi, entry_count,
-- row_count (int8 each) || sealed_at (int8 microseconds since 2000-01-01 UTC), big-endian.
-- One seal at a time: the row 'seal' of the owner-only table acgs_exclusive, locked here.
-- Returns the new block, or no row when nothing is final yet. READ COMMITTED only: each
-- statement must see what committed before it, including a block sealed while this one waited.
CREATE OR REPLACE FUNCTION ledger_seal()
RETURNS TABLE (block_id bigint, entry_count bigint, row_count bigint, block_hash bytea)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path FROM CURRENT
AS $fn$
DECLARE
    prev_id bigint;
    prev_hash bytea;
    lo xid8;
    hi xid8;
    hashes bytea[];
    entries bigint;
    validations bigint;
    root bytea;
    at timestamptz := date_trunc('milliseconds', clock_timestamp());
    new_hash bytea;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_transaction_state',
            MESSAGE = 'ledger_seal() runs under READ COMMITTED only';
    END IF;
    PERFORM 1 FROM acgs_exclusive AS x WHERE x.name = 'seal' FOR UPDATE;
    SELECT b.block_id, b.block_hash, b.xid_hi INTO prev_id, prev_hash, lo
      FROM ledger_blocks AS b ORDER BY b.block_id DESC LIMIT 1;
    prev_id := coalesce(prev_id, 0);
    prev_hash := coalesce(prev_hash, decode(repeat('00', 32), 'hex'));
    lo := coalesce(lo, '0'::xid8);
    hi := pg_snapshot_xmin(pg_current_snapshot());
    IF hi <= lo THEN
        RETURN;
    END IF;
    SELECT array_agg(ledger_entry_hash(e.entry_id, e.xid, e.kind, e.row_count, e.ids,
                                       e.rows_digest, e.partition, e.bounds, e.logged_at)
                     ORDER BY e.xid, e.entry_id),
           count(*), coalesce(sum(e.row_count) FILTER (WHERE e.kind = 'insert'), 0)
      INTO hashes, entries, validations
      FROM ledger_entries AS e
     WHERE e.xid >= lo AND e.xid < hi;
    IF entries = 0 THEN
        RETURN;
    END IF;
    root := ledger_merkle_root(hashes);
    new_hash := sha256(prev_hash || root || int8send(prev_id + 1) || int8send(lo::text::bigint)
                       || int8send(hi::text::bigint) || int8send(entries)
                       || int8send(validations) || timestamptz_send(at));
    INSERT INTO ledger_blocks AS b
        (block_id, prev_hash, merkle_root, xid_lo, xid_hi, entry_count, row_count, sealed_at,
         block_hash)
    VALUES (prev_id + 1, prev_hash, root, lo, hi, entries, validations, at, new_hash);
    RETURN QUERY SELECT prev_id + 1, entries, validations, new_hash;
END
$fn$
