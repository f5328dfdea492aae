SELECT refresh_tenant_metrics_24h()
