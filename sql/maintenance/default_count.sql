-- Rows in the default partition {default_table}.
SELECT count(*) FROM ONLY {default_table}
