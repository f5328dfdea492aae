-- The parent's default partition (schema, name), when it has one.
SELECT n.nspname, c.relname
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE i.inhparent = to_regclass(%(parent)s)
  AND pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT'
