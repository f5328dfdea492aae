-- The verifier's sorts and hashes of a partition's rows in memory.
SET LOCAL work_mem = '64MB'
