-- A reader of the 24-hour view (its longest wait during a refresh is measured).
SELECT * FROM tenant_constitutional_metrics_24h WHERE tenant_id = 'tenant-0001'
