-- The server's transaction time: what DEFAULT now() gives every row of the transaction.
SELECT now()
