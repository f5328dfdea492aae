-- Scope the current transaction to one tenant: row-level security of tenant-scoped roles
-- (migration 0005) reads it back with current_setting('acgs.tenant_id', true).
SELECT set_config('acgs.tenant_id', $1, true)
