-- A tenant's validations of one decision, newest first.
-- acgs_history() (migration 0013, written by acgs_history_compile() from the partitions) reads
-- the newest partition that has begun, then older ones until the limit is met, each through
-- the primary key (tenant_id, decision_id, created_at, id) scanned backwards; it answers from
-- the parent when the default partition or a premade month holds rows of the decision. Exactly
-- the rows of the same look-up on the parent, at the cost of the partitions it reads.
SELECT id, tenant_id, decision_id, constitutional_hash, compliance_score,
       validation_details, processing_time_ms, created_at
FROM acgs_history(p_tenant => $1, p_decision => $2, p_hash => $3, p_limit => $4)
