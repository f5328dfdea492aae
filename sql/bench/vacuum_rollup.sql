-- Statistics and the visibility map of the rollup after a bulk load.
VACUUM (ANALYZE) validation_rollup
