-- Planner statistics of the validations: the parent's (inheritance) and every partition's.
ANALYZE constitutional_validations
