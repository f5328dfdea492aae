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
AS $fn$
BEGIN
    INSERT INTO ledger_entries (xid, kind, row_count, min_id, max_id, ids, rows_digest)
    SELECT pg_current_xact_id(), 'insert', count(*), min(n.id), max(n.id),
           range_agg(int8range(n.id, n.id, '[]')),
           sha256(string_agg(ledger_row_digest(n.id, n.tenant_id, n.decision_id,
                                               n.constitutional_hash, n.compliance_score,
                                               n.validation_details, n.processing_time_ms,
                                               n.created_at),
                             ''::bytea ORDER BY n.id))
    FROM new_rows AS n
    HAVING count(*) > 0;
    RETURN NULL;
END
$fn$
