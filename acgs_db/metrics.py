"""Prometheus metrics (optional extra ``acgs-db[metrics]``).

Collectors live in a registry of their own, passed to whoever records into it, so that two
refreshers or test cases never share counters by accident.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from acgs_db.errors import ConfigurationError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from acgs_db.refresher import Backlog, RefreshResult

try:
    import prometheus_client as prom
except ImportError:  # pragma: no cover - exercised only without the extra
    prom = None  # type: ignore[assignment]


class Metrics:
    """The collectors of acgs-db in one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        if prom is None:
            raise ConfigurationError(
                "Prometheus metrics need the optional extra: pip install 'acgs-db[metrics]'"
            )
        self.registry = registry or prom.CollectorRegistry()
        self.refresh_duration = prom.Histogram(
            "acgs_db_refresh_duration_seconds",
            "Time to refresh tenant_constitutional_metrics_24h",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=self.registry,
        )
        self.refresh_last_success = prom.Gauge(
            "acgs_db_refresh_last_success_timestamp_seconds",
            "Unix time of the last successful refresh",
            registry=self.registry,
        )
        self.refresh_failures = prom.Counter(
            "acgs_db_refresh_failures",
            "Refresh attempts that failed",
            registry=self.registry,
        )
        self.refresh_skips = prom.Counter(
            "acgs_db_refresh_skips",
            "Refresh attempts skipped because another process held the refresh",
            registry=self.registry,
        )
        self.fold_lag = prom.Gauge(
            "acgs_db_rollup_fold_lag_seconds",
            "Age of the oldest write not yet folded into validation_rollup",
            registry=self.registry,
        )
        self.backlog_rows = prom.Gauge(
            "acgs_db_rollup_backlog_delta_rows",
            "Pending rollup deltas older than the 24-hour window (folded in slices)",
            registry=self.registry,
        )
        self.backlog_buckets = prom.Gauge(
            "acgs_db_rollup_backlog_buckets",
            "Hour buckets with pending rollup deltas older than the 24-hour window",
            registry=self.registry,
        )
        self.backlog_oldest = prom.Gauge(
            "acgs_db_rollup_backlog_oldest_bucket_timestamp_seconds",
            "Unix time of the oldest hour bucket in the rollup's backlog (0: no backlog)",
            registry=self.registry,
        )
        self.backlog_slices = prom.Counter(
            "acgs_db_rollup_backlog_slices",
            "Slices of the rollup's backlog folded",
            registry=self.registry,
        )
        self.backlog_folded_rows = prom.Counter(
            "acgs_db_rollup_backlog_folded_delta_rows",
            "Pending rollup deltas folded by backlog slices",
            registry=self.registry,
        )
        self.statement_duration = prom.Histogram(
            "acgs_db_statement_duration_seconds",
            "Duration of repository statements",
            ["statement"],
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1, 10),
            registry=self.registry,
        )
        self.rows_copied = prom.Counter(
            "acgs_db_rows_copied",
            "Validation rows written by bulk_insert",
            registry=self.registry,
        )

        self.writer_records = prom.Counter(
            "acgs_db_writer_records",
            "Validation records committed and acknowledged by audit writers",
            registry=self.registry,
        )
        self.writer_batches = prom.Counter(
            "acgs_db_writer_batches",
            "Batches (one COPY and one commit each) committed by audit writers",
            registry=self.registry,
        )
        self.writer_batch_size = prom.Histogram(
            "acgs_db_writer_batch_size",
            "Records per audit-writer batch",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096),
            registry=self.registry,
        )
        self.writer_queue_depth = prom.Gauge(
            "acgs_db_writer_queue_depth",
            "Records waiting for an audit-writer batch",
            registry=self.registry,
        )
        self.writer_ack_latency = prom.Histogram(
            "acgs_db_writer_ack_latency_seconds",
            "Time from write() to the record's commit being acknowledged",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5, 30),
            registry=self.registry,
        )
        self.writer_failures = prom.Counter(
            "acgs_db_writer_failed_records",
            "Records whose audit-writer batch failed at the server (AuditWriteError)",
            registry=self.registry,
        )
        self.writer_retries = prom.Counter(
            "acgs_db_writer_retries",
            "Audit-writer batch attempts repeated after a lost connection or a transient error",
            registry=self.registry,
        )

        self.replica_reads = prom.Counter(
            "acgs_db_replica_reads",
            "Repository reads (history, decision_scores, tenant_metrics) per server that"
            " answered: primary or a standby (replica0, replica1, ... in ACGS_REPLICA_URLS order)",
            ["target"],
            registry=self.registry,
        )
        self.replica_lag = prom.Gauge(
            "acgs_db_replica_lag_seconds",
            "How far a standby is behind the primary by WAL position (0: replayed the newest"
            " sample; +Inf: down)",
            ["replica"],
            registry=self.registry,
        )
        self.replica_fallbacks = prom.Counter(
            "acgs_db_replica_fallbacks",
            "Reads meant for a standby that went elsewhere: unavailable (none up within the lag"
            " bound), read_your_writes (none has replayed the reader's write), fault (a standby"
            " failed during the read)",
            ["reason"],
            registry=self.registry,
        )

    def observe_refresh(self, result: RefreshResult) -> None:
        if result.refreshed:
            self.refresh_duration.observe(result.duration_s)
            self.refresh_last_success.set(result.finished_at.timestamp())
        else:
            self.refresh_skips.inc()

    def observe_backlog(self, backlog: Backlog) -> None:
        self.backlog_rows.set(backlog.delta_rows)
        self.backlog_buckets.set(backlog.buckets)
        oldest = backlog.oldest_bucket
        self.backlog_oldest.set(0 if oldest is None else oldest.timestamp())

    def serve(self, port: int, addr: str = "127.0.0.1") -> None:
        """Serve ``/metrics`` over HTTP from a background thread."""
        prom.start_http_server(port, addr=addr, registry=self.registry)
