"""Records that cross the repository boundary, and the checks every incoming value passes.

:class:`ValidationRecord` is a named tuple: immutable, typed and as cheap to build in bulk as a
plain tuple. It is checked when written, not when built, so that a batch of a million costs one
pass of checks right before the COPY that sends it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, NamedTuple

from acgs_db.constants import CONSTITUTIONAL_HASH
from acgs_db.errors import InvalidRecordError
from acgs_db.jsoncodec import check_json

TENANT_ID_MAX = 50
DECISION_ID_MAX = 100
DECISION_HASH_MAX = 128
_INT32_MAX = 2**31 - 1
_SCORE_PLACES = Decimal("0.0001")  # numeric(5,4)
# The driver sends 0001-01-01T00:00:00Z as -infinity, and cannot send what lies before it.
_EARLIEST = datetime(1, 1, 2, tzinfo=UTC)


class ValidationRecord(NamedTuple):
    """One validation of an AI decision against the constitution.

    ``created_at=None`` means "now" on the server (the transaction's start, like the column's
    default). ``validation_details`` is any JSON value (dict, list, str, number, bool or None).
    """

    tenant_id: str
    decision_id: str
    compliance_score: float | Decimal
    validation_details: Any = None
    processing_time_ms: int | None = None
    created_at: datetime | None = None
    constitutional_hash: str = CONSTITUTIONAL_HASH


class HistoryEntry(NamedTuple):
    """A stored validation, as :meth:`ValidationRepository.history` returns it."""

    id: int
    tenant_id: str
    decision_id: str
    constitutional_hash: str
    compliance_score: Decimal
    validation_details: Any
    processing_time_ms: int | None
    created_at: datetime


class DecisionScore(NamedTuple):
    """Score and time of one validation of a decision (the decision look-up)."""

    decision_id: str
    compliance_score: Decimal
    processing_time_ms: int | None


@dataclass(frozen=True, slots=True)
class TenantMetrics:
    """A tenant's figures over the last 24 hours, or over a range asked for.

    ``source`` is ``"view"`` when read from ``tenant_constitutional_metrics_24h``,
    ``"realtime"`` when computed from the stored validations because the view was stale,
    unpopulated or did not hold the tenant yet, and ``"range"`` for the figures over a range
    (``tenant_metrics(tenant, since, until)``); ``as_of`` is when the figures were computed.
    """

    tenant_id: str
    constitutional_hash: str
    avg_compliance_score: Decimal | None
    total_validations: int
    failed_validations: int
    avg_processing_time_ms: Decimal | None
    p95_processing_time_ms: float | None
    p99_processing_time_ms: float | None
    constitutional_violations: int
    source: str
    as_of: datetime


@dataclass(frozen=True, slots=True)
class CachedDecision:
    """A decision validation result cached for a short while."""

    tenant_id: str
    decision_hash: str
    validation_score: Decimal
    compliance_details: Any
    requirements: Any
    created_at: datetime


# -- checks -------------------------------------------------------------------------------


def check_text(field: str, value: object, limit: int) -> str:
    """A non-empty string of at most ``limit`` characters that PostgreSQL can store."""
    if not isinstance(value, str):
        raise InvalidRecordError(field, f"must be a string, got {type(value).__name__}")
    if not value:
        raise InvalidRecordError(field, "must not be empty")
    if len(value) > limit:
        raise InvalidRecordError(field, f"is {len(value)} characters long; the limit is {limit}")
    if "\x00" in value:
        raise InvalidRecordError(field, "contains a NUL character, which PostgreSQL cannot store")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidRecordError(field, f"is not valid Unicode text ({exc.reason})") from None
    return value


def check_score(field: str, value: object) -> float | Decimal:
    """A number in [0, 1]; NaN, infinities and booleans are refused."""
    if isinstance(value, Decimal):
        if not value.is_finite() or not 0 <= value <= 1:
            raise InvalidRecordError(field, f"must lie in [0, 1], got {value!r}")
        # Rounded as numeric(5,4) rounds (half away from zero), which also keeps the exponent
        # within what the driver can encode.
        return value.quantize(_SCORE_PLACES, rounding=ROUND_HALF_UP)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRecordError(field, f"must be a number, got {type(value).__name__}")
    if not 0.0 <= value <= 1.0:  # also false for NaN
        raise InvalidRecordError(field, f"must lie in [0, 1], got {value!r}")
    return value


def check_processing_time(value: object, limit: int) -> int | None:
    """None, or a whole number of milliseconds in [0, limit]."""
    if value is None:
        return None
    if type(value) is not int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidRecordError(
                "processing_time_ms", f"must be an integer or None, got {type(value).__name__}"
            )
        value = int(value)
    if value < 0:
        raise InvalidRecordError("processing_time_ms", f"must not be negative, got {value}")
    if value > limit or value > _INT32_MAX:
        raise InvalidRecordError(
            "processing_time_ms", f"{value} ms is implausible; the limit is {limit} ms"
        )
    return value


def check_timestamp(value: object, latest: datetime) -> datetime:
    """A timezone-aware datetime no later than ``latest`` (now plus the allowed clock skew)."""
    if not isinstance(value, datetime):
        raise InvalidRecordError(
            "created_at", f"must be a datetime or None, got {type(value).__name__}"
        )
    offset = value.utcoffset()
    if offset is None:
        raise InvalidRecordError(
            "created_at", "is a naive datetime; give it a time zone (e.g. datetime.now(UTC))"
        )
    if value < _EARLIEST:
        raise InvalidRecordError("created_at", f"{value.isoformat()} lies before 0001-01-02 UTC")
    if value > latest:
        raise InvalidRecordError(
            "created_at",
            f"{value.isoformat()} lies in the future beyond the allowed clock skew "
            f"(latest accepted {latest.isoformat()})",
        )
    return value


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds a record is checked against (from :class:`acgs_db.settings.Settings`)."""

    max_details_bytes: int
    max_processing_time_ms: int
    max_clock_skew: timedelta


def row_checker(limits: Limits, now: datetime) -> Callable[[ValidationRecord], tuple[Any, ...]]:
    """A function that checks a record and returns it as a row of ``COPY_COLUMNS``, raising
    :class:`InvalidRecordError`; built once per transaction, it runs once per row.

    ``now`` is the server's transaction time: it fills a missing ``created_at`` (what the
    column's default would give) and, plus the allowed clock skew, bounds future timestamps.
    """
    latest = now + limits.max_clock_skew
    max_details = limits.max_details_bytes
    max_took = min(limits.max_processing_time_ms, _INT32_MAX)
    chash_ok = CONSTITUTIONAL_HASH

    def check(record: ValidationRecord) -> tuple[Any, ...]:
        if type(record) is not ValidationRecord and not isinstance(record, ValidationRecord):
            raise InvalidRecordError(
                "record", f"must be a ValidationRecord, got {type(record).__name__}"
            )
        tenant_id, decision_id, score, details, took, created_at, chash = record
        if chash != chash_ok:
            raise InvalidRecordError("constitutional_hash", f"must be {chash_ok!r}, got {chash!r}")
        # The common case in a few comparisons; anything unusual takes the full checks.
        if not (
            type(tenant_id) is str
            and 0 < len(tenant_id) <= TENANT_ID_MAX
            and tenant_id.isascii()
            and "\x00" not in tenant_id
        ):
            check_text("tenant_id", tenant_id, TENANT_ID_MAX)
        if not (
            type(decision_id) is str
            and 0 < len(decision_id) <= DECISION_ID_MAX
            and decision_id.isascii()
            and "\x00" not in decision_id
        ):
            check_text("decision_id", decision_id, DECISION_ID_MAX)
        if not (type(score) is float and 0.0 <= score <= 1.0):
            score = check_score("compliance_score", score)
        if not (took is None or (type(took) is int and 0 <= took <= max_took)):
            took = check_processing_time(took, limits.max_processing_time_ms)
        if created_at is None:
            created_at = now
        elif not (
            type(created_at) is datetime
            and created_at.tzinfo is not None
            and created_at.utcoffset() is not None
            and _EARLIEST <= created_at <= latest
        ):
            created_at = check_timestamp(created_at, latest)
        return (
            tenant_id,
            decision_id,
            chash_ok,
            score,
            None if details is None else check_json("validation_details", details, max_details),
            took,
            created_at,
        )

    return check


def copy_row(record: ValidationRecord, limits: Limits, now: datetime) -> tuple[Any, ...]:
    """Check one record and return its COPY row (see :func:`row_checker`)."""
    return row_checker(limits, now)(record)


COPY_COLUMNS = (
    "tenant_id",
    "decision_id",
    "constitutional_hash",
    "compliance_score",
    "validation_details",
    "processing_time_ms",
    "created_at",
)
