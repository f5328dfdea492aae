"""The schema at head as SQLAlchemy Core metadata, for services that query with SQLAlchemy.

The migrations (``migrations/versions``) remain the source of truth: this module describes
what they create, with the same constraint and index names, and ``alembic check`` (a test and a
CI step) fails when the two drift apart. It holds the tables, their CHECKs, keys and indexes
(covering ``INCLUDE`` columns, BRIN with its storage options, the monthly range partitioning of
``constitutional_validations``), and the columns of the two metrics views, marked
``info={"is_view": True}``: they may be selected from but are never created from here, and
autogenerate leaves them out. Functions, triggers, policies and grants are not modelled.

The tables carry no schema: they resolve through ``search_path`` like the package's own SQL. A
service whose ``ACGS_SCHEMA`` is not ``public`` sets ``search_path`` or maps ``None`` to its
schema with ``execution_options(schema_translate_map={None: "audit"})``.

Import it where it is used (``from acgs_db import tables``): ``import acgs_db`` does not.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Double,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import INT8MULTIRANGE, JSONB, OID
from sqlalchemy.types import UserDefinedType

from acgs_db.constants import CONSTITUTIONAL_HASH

metadata = MetaData()
"""Every table and view of the audit store at the head revision."""

VIEW = {"is_view": True}
"""``Table.info`` of a view: selectable, never created nor compared by autogenerate."""

_HASH_DEFAULT = text(f"'{CONSTITUTIONAL_HASH}'")


def _now() -> Column[Any]:
    return Column(
        "created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")
    )


constitutional_validations = Table(
    "constitutional_validations",
    metadata,
    Column("id", BigInteger, Identity(always=False), nullable=False),
    Column("tenant_id", String(50), nullable=False),
    Column("decision_id", String(100), nullable=False),
    Column("constitutional_hash", String(20), nullable=False, server_default=_HASH_DEFAULT),
    Column("compliance_score", Numeric(5, 4), nullable=False),
    Column("validation_details", JSONB),
    Column("processing_time_ms", Integer),
    _now(),
    CheckConstraint("tenant_id <> ''", name="constitutional_validations_tenant_id_check"),
    CheckConstraint("decision_id <> ''", name="constitutional_validations_decision_id_check"),
    CheckConstraint(
        f"constitutional_hash = '{CONSTITUTIONAL_HASH}'",
        name="constitutional_validations_hash_check",
    ),
    CheckConstraint(
        "compliance_score >= 0 AND compliance_score <= 1",
        name="constitutional_validations_score_check",
    ),
    CheckConstraint(
        "processing_time_ms >= 0", name="constitutional_validations_processing_time_check"
    ),
    PrimaryKeyConstraint(
        "tenant_id", "decision_id", "created_at", "id", name="constitutional_validations_pkey"
    ),
    postgresql_partition_by="RANGE (created_at)",
)
"""Every validation, range-partitioned by month on ``created_at`` (pg_partman keeps the
partitions); the primary key's order is the history look-up's."""

Index(
    "idx_constitutional_validations_tenant_hash_time",
    constitutional_validations.c.tenant_id,
    constitutional_validations.c.constitutional_hash,
    constitutional_validations.c.created_at.desc(),
    postgresql_include=["compliance_score", "processing_time_ms"],
)
Index(
    "idx_constitutional_validations_decision_lookup",
    constitutional_validations.c.decision_id,
    constitutional_validations.c.constitutional_hash,
    postgresql_include=["compliance_score", "processing_time_ms"],
)
Index(
    "idx_constitutional_validations_created_brin",
    constitutional_validations.c.created_at,
    postgresql_using="brin",
    postgresql_with={"pages_per_range": "32", "autosummarize": "on"},
)

decision_validation_cache = Table(
    "decision_validation_cache",
    metadata,
    Column("tenant_id", String(50), nullable=False),
    Column("decision_hash", String(128), nullable=False),
    Column("constitutional_hash", String(20), nullable=False, server_default=_HASH_DEFAULT),
    Column("validation_score", Numeric(5, 4), nullable=False),
    Column("compliance_details", JSONB),
    Column("requirements", JSONB),
    _now(),
    CheckConstraint("tenant_id <> ''", name="decision_validation_cache_tenant_id_check"),
    CheckConstraint("decision_hash <> ''", name="decision_validation_cache_decision_hash_check"),
    CheckConstraint(
        f"constitutional_hash = '{CONSTITUTIONAL_HASH}'",
        name="decision_validation_cache_hash_check",
    ),
    CheckConstraint(
        "validation_score >= 0 AND validation_score <= 1",
        name="decision_validation_cache_score_check",
    ),
    PrimaryKeyConstraint(
        "tenant_id", "decision_hash", "constitutional_hash", name="decision_validation_cache_pkey"
    ),
    prefixes=["UNLOGGED"],
)
"""Decisions validated recently, per tenant (UNLOGGED: a crash empties it)."""


def _rollup_columns() -> list[Column[Any]]:
    return [
        Column("tenant_id", String(50), nullable=False),
        Column("bucket", DateTime(timezone=True), nullable=False),
        Column("processing_time_ms", Integer),
        Column("validations", BigInteger, nullable=False),
        Column("score_sum", Numeric, nullable=False),
        Column("below_95", BigInteger, nullable=False),
        Column("below_90", BigInteger, nullable=False),
    ]


validation_rollup = Table(
    "validation_rollup",
    metadata,
    *_rollup_columns(),
    UniqueConstraint(
        "tenant_id",
        "bucket",
        "processing_time_ms",
        name="validation_rollup_key",
        postgresql_include=["validations", "score_sum", "below_95", "below_90"],
        postgresql_nulls_not_distinct=True,
    ),
    Index("validation_rollup_bucket", "bucket"),
    Index(
        "validation_rollup_value",
        "tenant_id",
        "processing_time_ms",
        "bucket",
        postgresql_include=["validations"],
    ),
)
"""Counts per tenant, hour bucket and processing time, from which the 24-hour metrics are
rebuilt exactly."""

validation_rollup_delta = Table(
    "validation_rollup_delta",
    metadata,
    *_rollup_columns(),
    Column("logged_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Index("validation_rollup_delta_tenant", "tenant_id", "bucket"),
    Index("validation_rollup_delta_bucket", "bucket"),
    postgresql_with={
        "autovacuum_vacuum_scale_factor": "0",
        "autovacuum_vacuum_threshold": "10000",
        "autovacuum_analyze_scale_factor": "0",
        "autovacuum_analyze_threshold": "10000",
    },
)
"""Counts of writes not yet folded into ``validation_rollup`` (by bucket: the refresh folds the
window's, slices the older ones, migration 0014)."""

rollup_totals_hour = Table(
    "rollup_totals_hour",
    metadata,
    Column("tenant_id", String(50), nullable=False),
    Column("bucket", DateTime(timezone=True), nullable=False),
    Column("total", BigInteger, nullable=False),
    Column("timed", BigInteger, nullable=False),
    Column("time_sum", Numeric, nullable=False),
    Column("score_sum", Numeric, nullable=False),
    Column("below_95", BigInteger, nullable=False),
    Column("below_90", BigInteger, nullable=False),
    PrimaryKeyConstraint(
        "tenant_id",
        "bucket",
        name="rollup_totals_hour_pkey",
        postgresql_include=["total", "timed", "time_sum", "score_sum", "below_95", "below_90"],
    ),
)
"""Totals per tenant and hour bucket, kept by the fold with ``validation_rollup`` (0011)."""

rollup_bins_day = Table(
    "rollup_bins_day",
    metadata,
    Column("tenant_id", String(50), nullable=False),
    Column("day", DateTime(timezone=True), nullable=False),
    Column("bin", Integer, nullable=False),
    Column("n", BigInteger, nullable=False),
    PrimaryKeyConstraint(
        "tenant_id", "day", "bin", name="rollup_bins_day_pkey", postgresql_include=["n"]
    ),
)
"""Counts of timed rows per tenant, day and ``rollup_bin()`` of the time, kept by the fold
(0011): where the ranged metrics find the bins holding their percentile ranks."""

Index(
    "rollup_bins_day_by_bin",
    rollup_bins_day.c.tenant_id,
    rollup_bins_day.c.bin,
    rollup_bins_day.c.day,
    postgresql_include=["n"],
)

rollup_bins_day_coarse = Table(
    "rollup_bins_day_coarse",
    metadata,
    Column("tenant_id", String(50), nullable=False),
    Column("day", DateTime(timezone=True), nullable=False),
    Column("bin", Integer, nullable=False),
    Column("n", BigInteger, nullable=False),
    PrimaryKeyConstraint(
        "tenant_id", "day", "bin", name="rollup_bins_day_coarse_pkey", postgresql_include=["n"]
    ),
)
"""Counts of timed rows per tenant, day and ``rollup_hour_bin()`` of the time (eight day bins
in one), kept by the fold (0016): where the ranged metrics place their percentile ranks first."""

rollup_bins_hour = Table(
    "rollup_bins_hour",
    metadata,
    Column("tenant_id", String(50), nullable=False),
    Column("bucket", DateTime(timezone=True), nullable=False),
    Column("bin", Integer, nullable=False),
    Column("n", BigInteger, nullable=False),
    PrimaryKeyConstraint(
        "tenant_id", "bucket", "bin", name="rollup_bins_hour_pkey", postgresql_include=["n"]
    ),
)
"""Counts of timed rows per tenant, hour bucket and ``rollup_hour_bin()`` of the time, kept by
the fold (0015): where the 24-hour figures find the bins holding their percentile ranks."""

ingest_batches = Table(
    "ingest_batches",
    metadata,
    Column("batch_id", String(200), nullable=False),
    Column("rows", BigInteger, nullable=False, server_default=text("0")),
    Column("parts", Integer, nullable=False, server_default=text("1")),
    Column("token", Uuid),
    Column("committed_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("digest", LargeBinary),
    CheckConstraint("batch_id <> ''", name="ingest_batches_batch_id_check"),
    PrimaryKeyConstraint("batch_id", name="ingest_batches_pkey"),
    UniqueConstraint("token", name="ingest_batches_token_key"),
)
"""The ledger of bulk-insert batches (idempotent retries, two-phase COPY)."""
Index("ingest_batches_committed_at", ingest_batches.c.committed_at)  # the purge, oldest first


tenant_logins = Table(
    "tenant_logins",
    metadata,
    Column("login_oid", OID, nullable=False),
    Column("login", Text, nullable=False),
    Column("tenant_id", String(50), nullable=False),
    Column("bound_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    CheckConstraint("tenant_id <> ''", name="tenant_logins_tenant_id_check"),
    PrimaryKeyConstraint("login_oid", name="tenant_logins_pkey"),
    Index("tenant_logins_tenant", "tenant_id"),
)
"""Which tenant each tenant login is bound to (migration 0007; the owner's alone)."""

acgs_exclusive = Table(
    "acgs_exclusive",
    metadata,
    Column("name", Text, nullable=False),
    CheckConstraint("name IN ('refresh', 'fold', 'seal')", name="acgs_exclusive_name_check"),
    PrimaryKeyConstraint("name", name="acgs_exclusive_pkey"),
)
"""Rows the refresh, the fold and the ledger's seal lock to run one at a time (migrations 0007,
0010; the owner's alone)."""


class XID8(UserDefinedType[int]):
    """PostgreSQL's ``xid8`` (a 64-bit transaction id), which SQLAlchemy does not name."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "xid8"


ledger_entries = Table(
    "ledger_entries",
    metadata,
    Column("entry_id", BigInteger, Identity(always=True), nullable=False),
    Column("xid", XID8(), nullable=False),
    Column("kind", Text, nullable=False),
    Column("row_count", BigInteger),
    Column("min_id", BigInteger),
    Column("max_id", BigInteger),
    Column("ids", INT8MULTIRANGE, nullable=False, server_default=text("'{}'::int8multirange")),
    Column("rows_digest", LargeBinary),
    Column("partition", Text),
    Column("bounds", Text),
    Column(
        "logged_at",
        DateTime(timezone=True),
        nullable=False,
        server_default=text("date_trunc('milliseconds'::text, now())"),
    ),
    CheckConstraint("kind IN ('insert', 'backfill', 'drop')", name="ledger_entries_kind_check"),
    PrimaryKeyConstraint("entry_id", name="ledger_entries_pkey"),
    Index("ledger_entries_xid", "xid", "entry_id"),
)
"""One entry per statement that inserted validations, per backfill and per retention drop
(migration 0010): the tamper-evident ledger's leaves."""

ledger_blocks = Table(
    "ledger_blocks",
    metadata,
    Column("block_id", BigInteger, nullable=False, autoincrement=False),
    Column("prev_hash", LargeBinary, nullable=False),
    Column("merkle_root", LargeBinary, nullable=False),
    Column("xid_lo", XID8(), nullable=False),
    Column("xid_hi", XID8(), nullable=False),
    Column("entry_count", BigInteger, nullable=False),
    Column("row_count", BigInteger, nullable=False),
    Column("sealed_at", DateTime(timezone=True), nullable=False),
    Column("block_hash", LargeBinary, nullable=False),
    PrimaryKeyConstraint("block_id", name="ledger_blocks_pkey"),
)
"""Sealed blocks of ledger entries, each chained to the previous one (migration 0010)."""

ledger_drop_pending = Table(
    "ledger_drop_pending",
    metadata,
    Column("xid", XID8(), nullable=False, server_default=text("pg_current_xact_id()")),
    Column("partition_oid", OID, nullable=False),
    Column("partition", Text, nullable=False),
    Column("bounds", Text),
    Column("row_count", BigInteger),
    Column("min_id", BigInteger),
    Column("max_id", BigInteger),
    Column("ids", INT8MULTIRANGE),
    Column("rows_digest", LargeBinary),
    PrimaryKeyConstraint("xid", "partition_oid", name="ledger_drop_pending_pkey"),
)
"""Partitions being dropped by retention, counted and digested before the drop (migration 0010)."""


def _metrics_columns() -> list[Column[Any]]:
    return [
        Column("tenant_id", String(50)),
        Column("constitutional_hash", String(20)),
        Column("avg_compliance_score", Numeric),
        Column("total_validations", BigInteger),
        Column("failed_validations", BigInteger),
        Column("avg_processing_time_ms", Numeric),
        Column("p95_processing_time_ms", Double),
        Column("p99_processing_time_ms", Double),
        Column("constitutional_violations", BigInteger),
        Column("last_updated", DateTime(timezone=True)),
    ]


tenant_constitutional_metrics_24h = Table(
    "tenant_constitutional_metrics_24h",
    metadata,
    *_metrics_columns(),
    Index("tenant_constitutional_metrics_24h_key", "tenant_id", "constitutional_hash", unique=True),
    info=VIEW,
)
"""The materialized view of every tenant's last 24 hours (refreshed by the refresher)."""

tenant_metrics_24h_current = Table(
    "tenant_metrics_24h_current",
    metadata,
    *_metrics_columns(),
    info=VIEW,
)
"""The view's row of the tenant in ``acgs.tenant_id`` (security barrier; for tenant roles)."""


def is_view(table: Table) -> bool:
    """Whether ``table`` stands for a view (selectable, never created or compared)."""
    return bool(table.info.get("is_view"))
