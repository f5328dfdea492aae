-- A scratch benchmark pool: no statement bound (the pool sets one for services).
SET statement_timeout = 0
