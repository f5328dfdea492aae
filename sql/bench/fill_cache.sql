-- One fresh decision-cache entry per tenant and decision of the loader's data set, in one
-- statement: $1 tenants, $2 decisions per tenant, $3 the constitutional hash. Ids follow
-- acgs_db.synthetic (tenant_name, decision_name); the key is decision_hash(): the SHA-256 of
-- the decision id, in hex. Re-running it refreshes the entries (their age restarts now).
INSERT INTO decision_validation_cache AS c
    (tenant_id, decision_hash, constitutional_hash, validation_score,
     compliance_details, requirements, created_at)
SELECT 'tenant-' || lpad(t::text, 4, '0'),
       encode(sha256(convert_to(
           'decision-' || lpad(t::text, 4, '0') || '-' || lpad(d::text, 7, '0'), 'UTF8')), 'hex'),
       $3,
       round((0.90 + 0.10 * random())::numeric, 4),
       jsonb_build_object('verdict', 'compliant', 'rule_set', 'fairness-v3',
                          'checks', jsonb_build_object('bias', 'pass', 'pii', 'pass',
                                                       'toxicity', 'pass')),
       jsonb_build_array('fairness-v3', 'privacy-v2'),
       now()
FROM generate_series(0, $1::int - 1) AS t,
     generate_series(0, $2::int - 1) AS d
ON CONFLICT (tenant_id, decision_hash, constitutional_hash) DO UPDATE
SET validation_score = EXCLUDED.validation_score,
    compliance_details = EXCLUDED.compliance_details,
    requirements = EXCLUDED.requirements,
    created_at = EXCLUDED.created_at
