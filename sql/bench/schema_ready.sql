-- True when the audit store's tables exist in the connection's search_path (migrated).
SELECT to_regclass('constitutional_validations') IS NOT NULL
   AND to_regclass('decision_validation_cache') IS NOT NULL
