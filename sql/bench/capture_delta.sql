-- Capture variant "delta" (what migration 0003 installs): counts per tenant, hour bucket and
-- processing time appended by a statement-level trigger with a transition table.
ALTER TABLE constitutional_validations ENABLE TRIGGER constitutional_validations_rollup_insert;
