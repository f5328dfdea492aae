SELECT {schema}.refresh_tenant_metrics_24h()
