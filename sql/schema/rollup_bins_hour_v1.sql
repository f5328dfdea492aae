-- The coarse bin of a processing time in rollup_bins_hour (migration 0015): eight neighbouring
-- bins of rollup_bin() (rollup_bins_v1.sql) in one, so 8 ms wide below 256 ms, then 4 bins per
-- power of two. An hour of a long tail (thousands of distinct times a day) holds ~70 of them
-- against ~770 distinct times. rollup_hour_bin_lo(b) is the lowest value of coarse bin b, so
-- bin b holds [rollup_hour_bin_lo(b), rollup_hour_bin_lo(b + 1)).
-- SQL-standard bodies, IMMUTABLE: inlined.
CREATE OR REPLACE FUNCTION rollup_hour_bin(v integer) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN rollup_bin(v) >> 3;

CREATE OR REPLACE FUNCTION rollup_hour_bin_lo(b integer) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN rollup_bin_lo(b << 3);
