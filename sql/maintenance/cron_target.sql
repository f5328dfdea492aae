-- The database the jobs run in, and whether the schema holds the routines they call.
SELECT current_database(),
       to_regprocedure(%(refresh)s) IS NOT NULL,
       to_regprocedure(%(maintenance)s) IS NOT NULL
