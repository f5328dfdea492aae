-- Start of a bulk insert's transaction: the server's transaction time (what DEFAULT now()
-- gives every row of it), and whether row-level security applies to this role on the table
-- (then COPY FROM is refused and rows go through a staging table).
SELECT now(), row_security_active('constitutional_validations')
