-- Rows of a table (name quoted by psycopg.sql.Identifier, taken from a migration file),
-- counted exactly up to %(cap)s + 1, and the planner's estimate over all its partitions.
SELECT (SELECT count(*) FROM (SELECT 1 FROM {table} LIMIT %(cap)s + 1) capped) AS counted,
       (SELECT coalesce(sum(greatest(c.reltuples, 0)), 0)::bigint
          FROM pg_partition_tree(to_regclass(%(table_name)s)) tree
          JOIN pg_class c ON c.oid = tree.relid) AS estimated
