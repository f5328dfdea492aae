-- Whether a table of the audit store exists in the schema on the search_path.
SELECT to_regclass(%(table)s) IS NOT NULL
