-- The hash of one ledger entry, a leaf of its block's Merkle tree (migration 0010):
-- SHA-256 of entry_id int8 || xid int8 || kind (int4 length, UTF-8) || row_count int8 (-1 when
-- unknown) || ids::text (int4 length, UTF-8, e.g. {[1,4),[7,8)}) || rows_digest (0x00 when
-- NULL, else 0x01 and its 32 bytes) || partition and bounds (int4 length, UTF-8; '' when NULL)
-- || logged_at int8 microseconds since 2000-01-01 UTC. All integers big-endian.
CREATE OR REPLACE FUNCTION ledger_entry_hash(
    p_entry_id bigint, p_xid xid8, p_kind text, p_row_count bigint, p_ids int8multirange,
    p_rows_digest bytea, p_partition text, p_bounds text, p_logged_at timestamptz
) RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN sha256(
    int8send(p_entry_id)
    || int8send(p_xid::text::bigint)
    || int4send(octet_length(convert_to(p_kind, 'UTF8'))) || convert_to(p_kind, 'UTF8')
    || int8send(coalesce(p_row_count, -1))
    || int4send(octet_length(convert_to(p_ids::text, 'UTF8'))) || convert_to(p_ids::text, 'UTF8')
    || CASE WHEN p_rows_digest IS NULL THEN '\x00'::bytea ELSE '\x01'::bytea || p_rows_digest END
    || int4send(octet_length(convert_to(coalesce(p_partition, ''), 'UTF8')))
    || convert_to(coalesce(p_partition, ''), 'UTF8')
    || int4send(octet_length(convert_to(coalesce(p_bounds, ''), 'UTF8')))
    || convert_to(coalesce(p_bounds, ''), 'UTF8')
    || timestamptz_send(p_logged_at)
)
