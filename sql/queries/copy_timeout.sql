-- A statement_timeout of the current transaction only ($1: milliseconds as text, '0' for none):
-- pool sessions run under ACGS_STATEMENT_TIMEOUT, which a bulk insert's COPY (bounded by
-- ACGS_COPY_TIMEOUT instead) and the refresh of the 24-hour view (its own, longer timeout) lift
-- for their own transaction. Ends with the transaction, so the pooled session keeps its setting.
SELECT set_config('statement_timeout', $1, true)
