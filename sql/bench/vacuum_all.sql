-- Statistics of every table of the database (the metrics benchmark, after its load).
VACUUM (ANALYZE)
