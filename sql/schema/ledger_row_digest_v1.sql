-- The ledger's digest of one validation (migration 0010): SHA-256 of its canonical encoding,
-- which an auditor can recompute from the columns alone (README, "Tamper-evident ledger"):
--   id                    int8, big-endian
--   tenant_id, decision_id, constitutional_hash, compliance_score::text
--                         each as int4 big-endian byte length, then its UTF-8 bytes
--   validation_details    jsonb's text output (keys in jsonb's order), length-prefixed the
--                         same way, or int4 -1 when NULL
--   processing_time_ms    0x00 when NULL, else 0x01 then int4 big-endian
--   created_at            int8 big-endian, microseconds since 2000-01-01 00:00:00 UTC
-- Columns are passed one by one (not as the table's row type) so that a partition, whose row
-- type differs from its parent's, is digested by the same function.
CREATE OR REPLACE FUNCTION ledger_row_digest(
    p_id bigint, p_tenant_id text, p_decision_id text, p_constitutional_hash text,
    p_compliance_score numeric, p_validation_details jsonb, p_processing_time_ms integer,
    p_created_at timestamptz
) RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN sha256(
    int8send(p_id)
    || int4send(octet_length(convert_to(p_tenant_id, 'UTF8'))) || convert_to(p_tenant_id, 'UTF8')
    || int4send(octet_length(convert_to(p_decision_id, 'UTF8')))
    || convert_to(p_decision_id, 'UTF8')
    || int4send(octet_length(convert_to(p_constitutional_hash, 'UTF8')))
    || convert_to(p_constitutional_hash, 'UTF8')
    || int4send(octet_length(convert_to(p_compliance_score::text, 'UTF8')))
    || convert_to(p_compliance_score::text, 'UTF8')
    || CASE WHEN p_validation_details IS NULL THEN int4send(-1)
            ELSE int4send(octet_length(convert_to(p_validation_details::text, 'UTF8')))
                 || convert_to(p_validation_details::text, 'UTF8') END
    || CASE WHEN p_processing_time_ms IS NULL THEN '\x00'::bytea
            ELSE '\x01'::bytea || int4send(p_processing_time_ms) END
    || timestamptz_send(p_created_at)
)
