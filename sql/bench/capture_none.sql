-- Capture variant "none" (scratch databases only): no trigger on inserts.
ALTER TABLE constitutional_validations DISABLE TRIGGER constitutional_validations_rollup_insert;
