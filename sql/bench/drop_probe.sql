-- One DROP TABLE of a temporary table, the event triggers' cost alone.
DO $probe$
BEGIN
    CREATE TEMPORARY TABLE acgs_bench_drop_probe (a integer);
    DROP TABLE acgs_bench_drop_probe;
END
$probe$
