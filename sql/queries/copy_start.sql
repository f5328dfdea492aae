-- Start of a bulk insert's transaction, in one round trip: the server's transaction time (what
-- DEFAULT now() gives every row of it), whether row-level security applies to this role on the
-- table (then COPY FROM is refused and rows go through a staging table), and the transaction's
-- statements bounded by $1 (the COPY's timeout, '0' for none) instead of the session's
-- statement_timeout.
SELECT now(), row_security_active('constitutional_validations'),
       set_config('statement_timeout', $1, true)
