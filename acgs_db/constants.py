"""Constants of the store's schema, apart from the Alembic plumbing so that importing the
library (``import acgs_db``) loads neither Alembic nor SQLAlchemy."""

from __future__ import annotations

CONSTITUTIONAL_HASH = "cdd01ef066bc6cf2"
"""The constitution every stored validation was checked against (enforced by a CHECK)."""

VALIDATIONS_TABLE = "constitutional_validations"
"""The partitioned table of validations."""
CACHE_TABLE = "decision_validation_cache"
"""The per-decision cache of validation results."""
METRICS_VIEW = "tenant_constitutional_metrics_24h"
"""The materialized view of each tenant's last 24 hours."""
