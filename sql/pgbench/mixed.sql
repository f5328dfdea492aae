-- pgbench: one validation request as a service makes it (the cache-miss path, the costliest):
-- look the decision up in the cache, read the decision's recent history, record the
-- validation, cache its result. Four statements, each its own transaction like the
-- repository's calls; pgbench counts the whole script as one transaction, so its TPS is
-- validation requests per second and its latency is the request's time in the database.
\set t random(0, :tenants - 1)
\set k random(0, :decisions - 1)
\set score random(8500, 10000) / 10000.0
\set took random_exponential(0, 1000, 200.0)
\set trace random(0, 2147483647)
SELECT tenant_id, decision_hash, validation_score, compliance_details, requirements, created_at
FROM decision_validation_cache
WHERE tenant_id = 'tenant-' || lpad(:t::text, 4, '0')
  AND decision_hash = encode(sha256(convert_to(
          'decision-' || lpad(:t::text, 4, '0') || '-' || lpad(:k::text, 7, '0'), 'UTF8')), 'hex')
  AND constitutional_hash = 'cdd01ef066bc6cf2'
  AND now() - created_at < :max_age::interval;
SELECT id, tenant_id, decision_id, constitutional_hash, compliance_score,
       validation_details, processing_time_ms, created_at
FROM acgs_history(p_tenant => 'tenant-' || lpad(:t::text, 4, '0'),
                  p_decision => 'decision-' || lpad(:t::text, 4, '0') || '-' || lpad(:k::text, 7, '0'),
                  p_hash => 'cdd01ef066bc6cf2', p_limit => 10);
INSERT INTO constitutional_validations
    (tenant_id, decision_id, constitutional_hash, compliance_score,
     validation_details, processing_time_ms, created_at)
VALUES ('tenant-' || lpad(:t::text, 4, '0'),
        'decision-' || lpad(:t::text, 4, '0') || '-' || lpad(:k::text, 7, '0'),
        'cdd01ef066bc6cf2',
        :score,
        ('{"rule_set": "privacy-v2", "model": "claude-gov-3", "risk": "medium", '
         '"checks": {"bias": "pass", "pii": "pass", "toxicity": "pass", "consent": "pass", '
         '"explainability": "pass"}, "reviewer": "auto-3", "trace_id": "'
         || lpad(to_hex(:trace::int), 16, '0') || '"}')::jsonb,
        :took,
        COALESCE(NULL::timestamptz, now()))
RETURNING id;
INSERT INTO decision_validation_cache AS c
    (tenant_id, decision_hash, constitutional_hash, validation_score,
     compliance_details, requirements, created_at)
VALUES ('tenant-' || lpad(:t::text, 4, '0'),
        encode(sha256(convert_to(
            'decision-' || lpad(:t::text, 4, '0') || '-' || lpad(:k::text, 7, '0'), 'UTF8')),
            'hex'),
        'cdd01ef066bc6cf2',
        :score,
        '{"verdict": "compliant", "rule_set": "privacy-v2"}'::jsonb,
        '["privacy-v2"]'::jsonb,
        now())
ON CONFLICT (tenant_id, decision_hash, constitutional_hash) DO UPDATE
SET validation_score = EXCLUDED.validation_score,
    compliance_details = EXCLUDED.compliance_details,
    requirements = EXCLUDED.requirements,
    created_at = EXCLUDED.created_at;
