-- The drop event triggers fire again (migration 0010).
DO $on$
BEGIN
    ALTER EVENT TRIGGER acgs_ledger_drop_start ENABLE;
    ALTER EVENT TRIGGER acgs_ledger_drop_end ENABLE;
END
$on$
