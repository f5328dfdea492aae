#!/usr/bin/env bash
# Partition maintenance of the audit store through psql, for system cron (see crontab.example).
#
# Calls <schema>.acgs_partition_maintenance() (migrations 0002, 0006, 0008; pg_cron and
# `acgs-db maintain` call it too): rows stranded in the default partition are moved into
# partitions of their own, then pg_partman's maintenance makes the premade partitions and drops
# those older than the retention, including any just made for stranded rows that old (they are
# deleted). Since migration 0008 every step runs under the procedure's default lock_timeout
# (2 s) and is retried 5 times with backoff, so a long-running reader never queues the table.
# On a database still at revision 0001 it runs CALL partman.run_maintenance_proc() alone.
#
# Database: ACGS_DATABASE_URL, else the embedded cluster's URL (acgs-db dev-db url).
# Schema: ACGS_SCHEMA (default public). libpq variables (PGPASSFILE, PGSSLMODE...) apply.
# Quiet on success; exit status non-zero when maintenance fails (psql ON_ERROR_STOP), so that
# cron mails the error. `acgs-db maintain` does the same and reports what it did.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
url=${ACGS_DATABASE_URL:-}
if [[ -z $url ]]; then
  if [[ -x $root/.venv/bin/acgs-db ]]; then
    url=$("$root/.venv/bin/acgs-db" dev-db url)
  else
    url=$(cd "$root" && "${PYTHON:-python3}" -m acgs_db dev-db url)
  fi
fi

# Both pg_partman procedures COMMIT: each statement runs on its own, outside a transaction
# block (psql's default, autocommit).
exec psql "$url" --no-psqlrc --quiet -v ON_ERROR_STOP=1 -v schema="${ACGS_SCHEMA:-public}" <<'SQL'
SET client_min_messages = warning;
SELECT to_regproc(:'schema' || '.acgs_partition_maintenance') IS NOT NULL
       AS shared_procedure \gset
\if :shared_procedure
CALL :"schema".acgs_partition_maintenance();
\else
CALL partman.run_maintenance_proc();
\endif
SQL
