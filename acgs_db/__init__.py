"""acgs-db: the PostgreSQL audit store of the ACGS governance platform."""

from acgs_db.constants import CONSTITUTIONAL_HASH
from acgs_db.errors import (
    AcgsDbError,
    AuditWriteError,
    BatchConflictError,
    BulkInsertError,
    ConfigurationError,
    InvalidRecordError,
    SchemaNotReadyError,
    TenantScopeError,
    WriterClosedError,
    WriterOverloaded,
)
from acgs_db.pool import create_pool
from acgs_db.records import (
    CachedDecision,
    DecisionScore,
    HistoryEntry,
    TenantMetrics,
    ValidationRecord,
)
from acgs_db.refresher import MetricsRefresher, RefresherStatus, RefreshResult
from acgs_db.repository import ValidationRepository
from acgs_db.settings import Settings
from acgs_db.writer import AuditWriter, WriterStatus

__all__ = [
    "CONSTITUTIONAL_HASH",
    "AcgsDbError",
    "AuditWriteError",
    "AuditWriter",
    "BatchConflictError",
    "BulkInsertError",
    "CachedDecision",
    "ConfigurationError",
    "DecisionScore",
    "HistoryEntry",
    "InvalidRecordError",
    "MetricsRefresher",
    "RefreshResult",
    "RefresherStatus",
    "SchemaNotReadyError",
    "Settings",
    "TenantMetrics",
    "TenantScopeError",
    "ValidationRecord",
    "ValidationRepository",
    "WriterClosedError",
    "WriterOverloaded",
    "WriterStatus",
    "create_pool",
]
