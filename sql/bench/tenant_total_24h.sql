-- Validations of tenant $1 in its last 24 hours, from tenant_metrics_24h().
SELECT total_validations FROM tenant_metrics_24h($1)
