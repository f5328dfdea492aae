-- Rows of the left query missing from the right one (run both ways: equal when both are 0).
SELECT count(*) FROM (({left}) EXCEPT ({right})) AS d
