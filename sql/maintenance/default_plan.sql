-- The rows waiting in the default partition {default_table}, by the partition pg_partman will
-- move them into, oldest first. Rows are counted per day first (a day never straddles two
-- partitions of a daily or longer interval), so show_partition_name runs once per day, not
-- once per row.
SELECT p.partition_schema || '.' || p.partition_table AS partition,
       sum(d.rows)::bigint AS rows,
       min(d.first) AS first,
       max(d.last) AS last
FROM (
    SELECT date_trunc('day', created_at) AS day, count(*) AS rows,
           min(created_at) AS first, max(created_at) AS last
    FROM ONLY {default_table}
    GROUP BY 1
) d
CROSS JOIN LATERAL partman.show_partition_name(%(parent)s, d.first::text) p
GROUP BY 1
ORDER BY min(d.first)
