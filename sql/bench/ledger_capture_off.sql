-- The ledger's baseline (scratch databases only): inserts leave no ledger entry.
ALTER TABLE constitutional_validations DISABLE TRIGGER constitutional_validations_ledger
