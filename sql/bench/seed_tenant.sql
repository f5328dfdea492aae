-- The seed's 24-hour SQL for tenant $1 alone.
SELECT * FROM ({seed}) AS s WHERE tenant_id = $1
