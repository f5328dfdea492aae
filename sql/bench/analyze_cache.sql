-- Planner statistics of the decision cache after it was filled.
ANALYZE decision_validation_cache
