-- The rollup's backlog: pending delta rows and hour buckets older than what the 24-hour window
-- needs, and the oldest of those buckets (NULL when none wait).
SELECT delta_rows, buckets, oldest_bucket FROM rollup_backlog()
