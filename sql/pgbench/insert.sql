-- pgbench: one validation written by the prepared single-row INSERT (sql/queries/insert.sql):
-- a random tenant and decision, a score near 0.97, a skewed processing time, ~230 bytes of
-- details like acgs_db.synthetic's, and created_at left to the server ($7 NULL). No ":" stands
-- right before a letter inside the literals: pgbench would read it as a variable.
\set t random(0, :tenants - 1)
\set k random(0, :decisions - 1)
\set score random(8500, 10000) / 10000.0
\set took random_exponential(0, 1000, 200.0)
\set trace random(0, 2147483647)
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
