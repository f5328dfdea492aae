-- The ledger's digest of one validation (migration 0010): SHA-256 of its canonical encoding,
-- which an auditor can recompute from the columns alone (README, "Tamper-evident ledger"):
--   id                  int8, big-endian (8 bytes)
--   then, as UTF-8, one field after another, each written LENGTH ":" VALUE "," where LENGTH is
--   the decimal byte length of VALUE's UTF-8 (a netstring), or "-," when the value is NULL:
--     tenant_id, decision_id, constitutional_hash, compliance_score::text (numeric(5,4): "0.9700"),
--     validation_details::text (jsonb's text output: keys in jsonb's order, ", " and ": ")
--   then processing_time_ms as decimal digits and ",", or "-," when NULL
--   created_at          int8 big-endian, microseconds since 2000-01-01 00:00:00 UTC
-- One text converted once per row: a conversion per column cost four times as much (measured
-- in acgs-db bench ledger). The database encoding is UTF8 (migration 0010 checks), so
-- octet_length() is the UTF-8 byte length. Columns are passed one by one (not as the table's
-- row type) so that a partition, whose row type differs from its parent's, uses it too; the
-- score and the details as text (p_score = compliance_score::text, p_details =
-- validation_details::text), which callers compute once per row in a subquery behind OFFSET 0:
-- the planner inlines this one-expression body, and an argument used twice would otherwise be
-- computed twice (jsonb's text output is the dearest part of the digest).
CREATE OR REPLACE FUNCTION ledger_row_digest(
    p_id bigint, p_tenant_id text, p_decision_id text, p_constitutional_hash text,
    p_score text, p_details text, p_processing_time_ms integer, p_created_at timestamptz
) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE
RETURN sha256(
    int8send(p_id)
    || convert_to(
        octet_length(p_tenant_id) || ':' || p_tenant_id || ','
        || octet_length(p_decision_id) || ':' || p_decision_id || ','
        || octet_length(p_constitutional_hash) || ':' || p_constitutional_hash || ','
        || octet_length(p_score) || ':' || p_score || ','
        || coalesce(octet_length(p_details) || ':' || p_details || ',', '-,')
        || coalesce(p_processing_time_ms::text || ',', '-,'),
        'UTF8')
    || timestamptz_send(p_created_at)
)
