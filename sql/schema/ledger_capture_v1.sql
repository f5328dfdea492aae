-- Statement-level capture of every insert into constitutional_validations (migration 0010):
-- one ledger entry per statement, in the writer's own transaction, so an entry exists exactly
-- when its rows are committed. It holds the writer's transaction id (sealing orders by it),
-- the row count, the statement's ids (a multirange: under concurrency a statement's ids need
-- not be contiguous) and the SHA-256 of the rows' digests concatenated in id order. Writers
-- insert into the ledger and nothing else: no shared row is updated, so they never wait on
-- each other. SECURITY DEFINER: writers need no privilege on the ledger.
CREATE OR REPLACE FUNCTION ledger_capture() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path FROM CURRENT
SET work_mem = '32MB'
AS $fn$
BEGIN
    INSERT INTO ledger_entries (xid, kind, row_count, min_id, max_id, ids, rows_digest)
    SELECT pg_current_xact_id(), 'insert', a.n, a.lo, a.hi,
           -- One statement's ids are contiguous unless a concurrent writer took ids in
           -- between; only then are they gathered range by range (range_agg: 3-4 us a row).
           CASE WHEN a.hi - a.lo + 1 = a.n THEN int8multirange(int8range(a.lo, a.hi, '[]'))
                ELSE (SELECT range_agg(int8range(r.id, r.id, '[]')) FROM new_rows AS r) END,
           a.digest
    FROM (SELECT count(*) AS n, min(v.id) AS lo, max(v.id) AS hi,
                 sha256(string_agg(ledger_row_digest(v.id, v.tenant_id, v.decision_id,
                                                     v.constitutional_hash, v.score, v.details,
                                                     v.processing_time_ms, v.created_at),
                                   ''::bytea ORDER BY v.id)) AS digest
          FROM (SELECT n.id, n.tenant_id, n.decision_id, n.constitutional_hash,
                       n.compliance_score::text AS score, n.validation_details::text AS details,
                       n.processing_time_ms, n.created_at
                  FROM new_rows AS n OFFSET 0) AS v) AS a
    WHERE a.n > 0;
    RETURN NULL;
END
$fn$
