-- Inserts leave a ledger entry again (migration 0010).
ALTER TABLE constitutional_validations ENABLE TRIGGER constitutional_validations_ledger
