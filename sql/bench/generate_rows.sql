-- Realistic validations generated on the server, in created_at order between $3 and $4:
-- $1 rows of $2 tenants (tenant-0000 ...), $5 decisions per tenant, tenant names may be
-- overridden by $6 (NULL: spread over $2 tenants). Scores: 85 % in [0.95, 1], 10 % in
-- [0.90, 0.95), 5 % below; processing times log-normal (median ~4 ms, long tail) with 0.5 %
-- unknown; ~200 bytes of details.
INSERT INTO constitutional_validations
    (tenant_id, decision_id, compliance_score, validation_details, processing_time_ms,
     created_at)
SELECT coalesce($6, 'tenant-' || lpad(t::text, 4, '0')),
       'decision-' || lpad(t::text, 4, '0') || '-' || lpad(floor(random() * $5)::int::text, 7, '0'),
       round((CASE WHEN u < 0.85 THEN 0.95 + 0.05 * random()
                   WHEN u < 0.95 THEN 0.90 + 0.05 * random()
                   ELSE 0.5 + 0.4 * random() END)::numeric, 4),
       jsonb_build_object(
           'rule_set', (ARRAY['fairness-v3', 'privacy-v2', 'safety-v5', 'transparency-v1'])[1 + t % 4],
           'model', 'claude-gov-3', 'risk', (ARRAY['low', 'medium', 'high'])[1 + g % 3],
           'checks', jsonb_build_object('bias', 'pass', 'pii', 'pass', 'toxicity', 'pass'),
           'trace_id', md5(g::text)),
       CASE WHEN random() < 0.005 THEN NULL
            ELSE floor(exp(1.4 + 0.9 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random())))::int
       END,
       $3::timestamptz + (g::float8 / $1) * ($4::timestamptz - $3::timestamptz)
FROM (SELECT g, floor(random() * $2)::int AS t, random() AS u FROM generate_series(1, $1) AS g) AS s
