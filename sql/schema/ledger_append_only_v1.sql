-- Refuses UPDATE, DELETE and TRUNCATE of the table it guards (migration 0010): validations and
-- the ledger are append-only whoever asks, the owner and superusers included (a superuser can
-- still disable triggers; verification then finds what changed). Statement-level, on the
-- parent only: pg_partman's moves out of the default partition act on the partitions directly
-- and keep ids and contents, so they are not refused and still verify.
CREATE OR REPLACE FUNCTION ledger_append_only() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $fn$
BEGIN
    RAISE EXCEPTION USING
        ERRCODE = 'insufficient_privilege',
        MESSAGE = TG_OP || ' on ' || TG_TABLE_NAME || ' refused: the table is append-only',
        HINT = 'Validations are evidence: they are never changed or deleted; retention drops'
               ' whole partitions, which the ledger records.';
END
$fn$
