"""Benchmarks of the audit store: pgbench with the project's scripts, and the seed's targets.

:mod:`acgs_db.bench.pgbench` runs ``pgbench`` on ``sql/pgbench/*.sql`` and reads its
per-transaction log into TPS, latency percentiles and failures; :mod:`acgs_db.bench.report`
sets those figures beside the targets of the seed documents.
"""

from __future__ import annotations
