-- The schema named by the settings first on the search path (the parameter: its quoted name).
SELECT set_config('search_path', %s, false)
