-- The Merkle root of a block's entry hashes, in block order (migration 0010): leaves are
-- SHA-256(0x00 || entry hash), an inner node is SHA-256(0x01 || left || right), and an odd
-- last node is carried up unchanged. One set-based statement per level: linear in the leaves.
CREATE OR REPLACE FUNCTION ledger_merkle_root(p_entry_hashes bytea[]) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path FROM CURRENT
AS $fn$
DECLARE
    level bytea[];
BEGIN
    SELECT array_agg(sha256('\x00'::bytea || h) ORDER BY i) INTO level
      FROM unnest(p_entry_hashes) WITH ORDINALITY AS u(h, i);
    WHILE coalesce(cardinality(level), 0) > 1 LOOP
        SELECT array_agg(node ORDER BY pair) INTO level
          FROM (SELECT (i + 1) / 2 AS pair,
                       CASE WHEN count(*) = 2
                            THEN sha256('\x01'::bytea || string_agg(h, ''::bytea ORDER BY i))
                            ELSE (array_agg(h))[1] END AS node
                  FROM unnest(level) WITH ORDINALITY AS u(h, i)
                 GROUP BY (i + 1) / 2) AS p;
    END LOOP;
    RETURN level[1];
END
$fn$
