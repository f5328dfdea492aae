-- The drop event triggers' baseline (scratch databases only, a superuser): DROP TABLE runs
-- without ledger_drop_start() and ledger_drop_end() (migration 0010).
DO $off$
BEGIN
    ALTER EVENT TRIGGER acgs_ledger_drop_start DISABLE;
    ALTER EVENT TRIGGER acgs_ledger_drop_end DISABLE;
END
$off$
