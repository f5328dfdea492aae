-- pg_partman's configuration of a parent: one row (its retention, NULL when it keeps
-- everything) when pg_partman manages it, none otherwise.
SELECT retention
FROM partman.part_config
WHERE parent_table = %(parent)s
