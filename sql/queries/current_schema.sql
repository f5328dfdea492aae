-- The schema unqualified names resolve to (the first existing one of search_path); NULL when
-- none of its schemas exists.
SELECT current_schema()
