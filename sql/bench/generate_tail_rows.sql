-- $1 validations of tenant $2, in created_at order between $3 and $4, with a long tail of
-- processing times (thousands of distinct values): 94.5 % log-normal (median ~150 ms), 5 %
-- uniform over 0..60,000 ms, 0.5 % unknown. Scores as in generate_rows.sql; 1,000 decisions.
INSERT INTO constitutional_validations
    (tenant_id, decision_id, compliance_score, validation_details, processing_time_ms,
     created_at)
SELECT $2,
       'decision-' || lpad(floor(random() * 1000)::int::text, 7, '0'),
       round((CASE WHEN u < 0.85 THEN 0.95 + 0.05 * random()
                   WHEN u < 0.95 THEN 0.90 + 0.05 * random()
                   ELSE 0.5 + 0.4 * random() END)::numeric, 4),
       jsonb_build_object('rule_set', 'fairness-v3', 'trace_id', md5(g::text)),
       CASE WHEN w < 0.005 THEN NULL
            WHEN w < 0.055 THEN floor(random() * 60000)::int
            ELSE floor(exp(5.0 + 1.0 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random())))::int
       END,
       $3::timestamptz + (g::float8 / $1) * ($4::timestamptz - $3::timestamptz)
FROM (SELECT g, random() AS u, random() AS w FROM generate_series(1, $1) AS g) AS s
