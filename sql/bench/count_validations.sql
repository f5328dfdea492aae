-- Rows of the validations table (benchmarks' checks that every acknowledged write is stored).
SELECT count(*) FROM constitutional_validations
