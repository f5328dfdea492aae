-- The partition of constitutional_validations holding the most rows (pg_class.reltuples, as
-- the loader's ANALYZE left it), its name quoted by the server, its share of the rows and the
-- partition count: the one-partition baseline of the history look-up (issue 13).
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname),
       greatest(c.reltuples, 0) / nullif(sum(greatest(c.reltuples, 0)) OVER (), 0),
       count(*) OVER ()
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE i.inhparent = to_regclass(current_schema() || '.constitutional_validations')
ORDER BY c.reltuples DESC, c.relname
LIMIT 1
