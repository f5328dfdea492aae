-- The session's staging table for roles under row-level security: COPY lands here (temporary
-- tables carry no row-level security), then stage_flush inserts the rows in one statement,
-- which the policies check. Emptied at every commit.
CREATE TEMPORARY TABLE IF NOT EXISTS acgs_ingest_stage (
    tenant_id varchar(50),
    decision_id varchar(100),
    constitutional_hash varchar(20),
    compliance_score numeric(5,4),
    validation_details jsonb,
    processing_time_ms integer,
    created_at timestamptz
) ON COMMIT DELETE ROWS
