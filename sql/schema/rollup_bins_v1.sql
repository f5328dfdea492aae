-- The bin of a processing time in rollup_bins_day (migration 0011): exact below 256 ms, then
-- 32 sub-bins per power of two (a bin is at most 1/32 of its values wide). rollup_bin_lo(b) is
-- the lowest value of bin b, so bin b holds [rollup_bin_lo(b), rollup_bin_lo(b + 1)).
-- SQL-standard bodies, IMMUTABLE: inlined, and usable by the fold and the ranged metrics alike.
CREATE OR REPLACE FUNCTION rollup_bin(v integer) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN v < 256 THEN v
            ELSE 256 + (23 - position('1' in v::bit(31)::text)) * 32
                 + ((v >> (26 - position('1' in v::bit(31)::text))) & 31) END;

CREATE OR REPLACE FUNCTION rollup_bin_lo(b integer) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN b < 256 THEN b ELSE (32 + mod(b - 256, 32))::bigint << ((b - 256) / 32 + 3) END;
