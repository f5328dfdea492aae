-- Delta rows waiting for the fold.
SELECT count(*) FROM validation_rollup_delta
