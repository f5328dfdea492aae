"""Where every table and statement of the store stands on the way to Citus (sharding by tenant).

Citus is not installed here, so the path is kept testable without it: this module declares, in
one place, how each relation of the store would be placed on a Citus cluster distributed by
``tenant_id``, and why each repository statement is (or is not) routed to a single shard;
``tests/test_scale_out.py`` checks the schema at head and the statements' generic plans against
these declarations and Citus's rules, and fails when a new table, trigger or statement appears
unclassified. ``docs/scale-out.md`` is the procedure that uses them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

DISTRIBUTION_COLUMN: Final = "tenant_id"
"""The column every distributed table is hashed on, so one tenant's rows share a shard group."""

COLOCATE_WITH: Final = "constitutional_validations"
"""The table every other distributed table is co-located with (``colocate_with``)."""


class Placement(StrEnum):
    """How a relation of the store is placed on a Citus cluster."""

    DISTRIBUTED = "distributed"
    """``create_distributed_table(name, 'tenant_id', colocate_with => COLOCATE_WITH)``."""
    REFERENCE = "reference"
    """``create_reference_table(name)``: one shard, a copy on every node."""
    LOCAL = "local"
    """Stays an ordinary table on the coordinator."""
    REPLACED = "replaced"
    """Cannot exist on a distributed table as it is; ``docs/scale-out.md`` says what replaces it."""
    VIEW = "view"
    """A plain view: Citus plans the query it stands for."""


@dataclass(frozen=True, slots=True)
class Table:
    """A relation of the store, its placement on Citus and the reason for it."""

    placement: Placement
    reason: str


TABLES: Final[dict[str, Table]] = {
    "constitutional_validations": Table(
        Placement.DISTRIBUTED,
        "the audit rows: every read and write names one tenant; the primary key "
        "(tenant_id, decision_id, created_at, id) already holds the distribution column",
    ),
    "decision_validation_cache": Table(
        Placement.DISTRIBUTED,
        "per-tenant cache keyed (tenant_id, decision_hash, constitutional_hash); UNLOGGED shards",
    ),
    "validation_rollup": Table(
        Placement.DISTRIBUTED,
        "per-tenant counts, joined with the validations by tenant in tenant_metrics_24h(): "
        "co-located so that a tenant's figures are computed on one shard",
    ),
    "validation_rollup_delta": Table(
        Placement.DISTRIBUTED,
        "pending counts per tenant, written in the writer's transaction and folded into the "
        "rollup shard by shard: co-located with both",
    ),
    "rollup_totals_hour": Table(
        Placement.DISTRIBUTED,
        "per-tenant hourly totals kept by the fold with the rollup and read with it by "
        "tenant_metrics_range() and tenant_metrics_24h(): co-located with both",
    ),
    "rollup_bins_day": Table(
        Placement.DISTRIBUTED,
        "per-tenant day bins of processing times kept by the fold with the rollup and read "
        "with it by tenant_metrics_range(): co-located with both",
    ),
    "rollup_bins_day_coarse": Table(
        Placement.DISTRIBUTED,
        "per-tenant coarse day bins of processing times kept by the fold with the rollup and "
        "read with it by tenant_metrics_range(): co-located with both",
    ),
    "rollup_bins_hour": Table(
        Placement.DISTRIBUTED,
        "per-tenant hour bins of processing times kept by the fold with the rollup and read "
        "with it by tenant_metrics_24h(): co-located with both",
    ),
    "tenant_logins": Table(
        Placement.REFERENCE,
        "the row-level security policies call acgs_session_tenant(), which reads this table; "
        "policies are evaluated where the shard is, so every worker needs a copy",
    ),
    "ingest_batches": Table(
        Placement.LOCAL,
        "the batch ledger is keyed by batch id, not by tenant (a batch spans tenants); a local "
        "table on the coordinator commits atomically with the distributed rows of the same "
        "transaction (Citus's two-phase commit is decided by the coordinator's transaction)",
    ),
    "acgs_exclusive": Table(
        Placement.LOCAL,
        "two rows locked FOR UPDATE to serialise the refresh and the fold, which run on the "
        "coordinator; a row lock on a local table costs no cross-node round trip",
    ),
    "ledger_entries": Table(
        Placement.LOCAL,
        "the tamper-evident ledger (migration 0010) covers every tenant's rows in one chain; "
        "on Citus each worker would keep entries for its shards and the coordinator seal them "
        "(not built: docs/scale-out.md, 'The ledger')",
    ),
    "ledger_blocks": Table(
        Placement.LOCAL,
        "the sealed, chained blocks: one chain for the whole store, on the coordinator",
    ),
    "ledger_drop_pending": Table(
        Placement.LOCAL,
        "partitions being dropped by retention, counted before the drop: DDL runs on the "
        "coordinator",
    ),
    "alembic_version": Table(
        Placement.LOCAL,
        "migration bookkeeping; Citus runs DDL from the coordinator only",
    ),
    "tenant_constitutional_metrics_24h": Table(
        Placement.REPLACED,
        "a materialized view over distributed tables is a local table on the coordinator, "
        "recomputed there by a cross-shard query: replaced by a table distributed by tenant_id "
        "that the fold refreshes shard by shard (docs/scale-out.md)",
    ),
    "tenant_metrics_24h_current": Table(
        Placement.VIEW,
        "security-barrier view of the metrics filtered by acgs_session_tenant()",
    ),
}
"""Every table, materialized view and view of the store's schema (partitions go with their
parent). A relation missing here fails ``tests/test_scale_out.py``."""

REPLACED_TRIGGERS: Final[dict[str, str]] = {
    "constitutional_validations_rollup_insert": "capture",
    "constitutional_validations_rollup_delete": "capture",
    "constitutional_validations_rollup_update": "capture",
    "constitutional_validations_ledger": "ledger",
    "constitutional_validations_append_only": "append-only",
}
"""Triggers on distributed tables. Citus refuses triggers on distributed tables unless
``citus.enable_unsafe_triggers`` is on, and then a trigger that writes another distributed
table fails ("cannot execute a distributed query from a query on a shard"): each is replaced on
Citus as ``docs/scale-out.md`` says (section "The capture")."""


class Routing(StrEnum):
    """How Citus would execute a repository statement."""

    TENANT = "tenant"
    """Every distributed table it touches is filtered (or written) by ``tenant_id = $n``:
    router-executed on the one shard that holds the tenant."""
    CROSS_SHARD = "cross-shard"
    """Touches every shard; the reason says why that is intended."""
    NO_DISTRIBUTED_TABLE = "no distributed table"
    """Touches local or reference tables, or none."""


@dataclass(frozen=True, slots=True)
class Statement:
    """How a statement of ``sql/queries`` runs on Citus, and why."""

    routing: Routing
    reason: str = ""


STATEMENTS: Final[dict[str, Statement]] = {
    "history": Statement(Routing.TENANT),
    "history_scoped": Statement(Routing.TENANT),
    "insert": Statement(Routing.TENANT),
    "cache_get": Statement(Routing.TENANT),
    "cache_put": Statement(Routing.TENANT),
    "metrics": Statement(Routing.TENANT),
    "metrics_realtime": Statement(Routing.TENANT),
    "metrics_range": Statement(Routing.TENANT),
    "metrics_range_scoped": Statement(
        Routing.CROSS_SHARD,
        "current_tenant_metrics_range() takes the tenant from the login inside the function: "
        "same as metrics_scoped",
    ),
    "decision_scores": Statement(
        Routing.CROSS_SHARD,
        "looks a decision up by decision_id alone (the seed's decision look-up, no tenant "
        "given): fans out to every shard, each an index-only scan of (decision_id, hash); "
        "a tenant argument would make it single-shard (an API change)",
    ),
    "cache_purge": Statement(
        Routing.CROSS_SHARD,
        "maintenance: deletes every tenant's expired cache entries, one parallel DELETE per "
        "shard; no tenant is involved",
    ),
    "refresh": Statement(
        Routing.CROSS_SHARD,
        "refresh_tenant_metrics_24h() folds and refreshes every tenant's figures: on Citus, "
        "one fold and one metrics upsert per shard (docs/scale-out.md)",
    ),
    "fold_lag": Statement(
        Routing.CROSS_SHARD,
        "rollup_fold_lag() is the age of the oldest pending delta of any tenant: min() over "
        "every shard, a monitoring read",
    ),
    "backlog": Statement(
        Routing.CROSS_SHARD,
        "rollup_backlog() counts the pending deltas older than the window of every tenant: "
        "count() and min() over every shard, a monitoring read",
    ),
    "backlog_slice": Statement(
        Routing.CROSS_SHARD,
        "fold_rollup_backlog() folds the oldest buckets' deltas of every tenant: on Citus, "
        "one ranged fold per shard, like the refresh's (docs/scale-out.md)",
    ),
    "metrics_scoped": Statement(
        Routing.CROSS_SHARD,
        "filters by acgs_session_tenant() (the login's tenant), which is not a parameter, so "
        "Citus cannot prune at plan time; on Citus the repository would pass its bound "
        "tenant as $n as well (row-level security still decides what it sees)",
    ),
    "metrics_scoped_realtime": Statement(
        Routing.CROSS_SHARD,
        "current_tenant_metrics_24h() takes the tenant from the login inside the function: "
        "same as metrics_scoped",
    ),
    "stage_flush": Statement(
        Routing.CROSS_SHARD,
        "INSERT ... SELECT from the session's temporary staging table (tenant logins' bulk "
        "path): Citus pulls the rows to the coordinator and routes each by tenant_id; they are "
        "all the bound tenant's, so one shard is written",
    ),
    "writer_batch": Statement(
        Routing.CROSS_SHARD,
        "the audit writer's batch of up to 256 rows of any tenants in one INSERT ... SELECT "
        "FROM unnest(arrays) with its claim in ingest_batches (local): Citus routes each row "
        "by tenant_id, and the batch commits on every shard it touched with the local claim",
    ),
    "copy_start": Statement(
        Routing.NO_DISTRIBUTED_TABLE,
        "now(), row_security_active() and set_config(): catalog and session only",
    ),
    "batch_claim": Statement(Routing.NO_DISTRIBUTED_TABLE, "ingest_batches (local)"),
    "batch_count": Statement(Routing.NO_DISTRIBUTED_TABLE, "ingest_batches (local)"),
    "batch_decided": Statement(Routing.NO_DISTRIBUTED_TABLE, "ingest_batches (local)"),
    "batch_digest": Statement(Routing.NO_DISTRIBUTED_TABLE, "ingest_batches (local)"),
    "batch_purge": Statement(
        Routing.NO_DISTRIBUTED_TABLE,
        "ingest_batches_purge(): ingest_batches (local) and pg_prepared_xacts on the coordinator",
    ),
    "batch_start": Statement(
        Routing.NO_DISTRIBUTED_TABLE,
        "the audit writer's claim in ingest_batches (local), now() and row_security_active()",
    ),
    "copy_timeout": Statement(Routing.NO_DISTRIBUTED_TABLE, "set_config(): a session setting"),
    "prepared_batches": Statement(
        Routing.NO_DISTRIBUTED_TABLE,
        "pg_prepared_xacts and ingest_batches (local) on the coordinator",
    ),
    "max_prepared_transactions": Statement(Routing.NO_DISTRIBUTED_TABLE, "a server setting"),
    "current_schema": Statement(Routing.NO_DISTRIBUTED_TABLE, "the session's current schema"),
    "session_tenant": Statement(
        Routing.NO_DISTRIBUTED_TABLE, "acgs_session_tenant() reads tenant_logins (reference)"
    ),
    "stage_create": Statement(
        Routing.NO_DISTRIBUTED_TABLE, "creates the session's temporary staging table"
    ),
}
"""Every statement of ``sql/queries`` by file name. A statement missing here fails
``tests/test_scale_out.py``, and so does a TENANT statement whose generic plan scans a
distributed table without a ``tenant_id = $n`` condition."""

DISTRIBUTED_FUNCTIONS: Final[frozenset[str]] = frozenset(
    {
        "tenant_metrics_24h",
        "tenant_metrics_24h_at",
        "current_tenant_metrics_24h",
        "tenant_metrics_range",
        "current_tenant_metrics_range",
        "refresh_tenant_metrics_24h",
        "fold_validation_rollup",
        "rollup_fold_lag",
        "rollup_fold_range",
        "rollup_drop_retired",
        "fold_rollup_backlog",
        "rollup_backlog",
    }
)
"""Functions of the store that read distributed tables: a statement calling one is not
NO_DISTRIBUTED_TABLE."""


TENANT_FUNCTIONS: Final[dict[str, str]] = {
    "acgs_history": (
        "the history look-up (migration 0013): every statement it runs names one partition and "
        "filters tenant_id = p_tenant (tests/test_history_walk.py checks its body), so each is "
        "a router query on Citus; the partition names it is written with would be the "
        "distributed partitions' (Citus keeps them), rewritten by the same maintenance"
    ),
    "acgs_history_scoped": "acgs_history() for tenant logins: the same statements",
    "tenant_metrics_24h_planned": (
        "runs tenant_metrics_24h(p_tenant) (migration 0015), inlined: every table it reads is "
        "filtered by tenant_id = p_tenant (tests/test_scale_out.py checks its plan)"
    ),
    "tenant_metrics_range_planned": (
        "runs tenant_metrics_range(p_tenant, ...) (migration 0015), inlined: every table it "
        "reads is filtered by tenant_id = p_tenant"
    ),
}
"""Functions of the store that read distributed tables with ``tenant_id =`` a parameter in
every statement: a statement calling one stays a TENANT statement."""


def distributed_tables() -> frozenset[str]:
    """The tables distributed by ``tenant_id``, the metrics view's replacement included."""
    return frozenset(
        name
        for name, table in TABLES.items()
        if table.placement in (Placement.DISTRIBUTED, Placement.REPLACED)
    )
