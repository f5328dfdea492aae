-- The partitions pg_partman manages for a parent (the default excluded), oldest first.
SELECT partition_schemaname || '.' || partition_tablename
FROM partman.show_partitions(%(parent)s)
