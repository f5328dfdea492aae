"""Settings read from ``ACGS_*`` environment variables.

Every tunable of the toolkit lives here, with the seed's figures as defaults, so
that a deployment changes behaviour through its environment and code passes an
explicit :class:`Settings` around instead of reading ``os.environ`` itself.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from acgs_db.errors import ConfigurationError

PREFIX = "ACGS_"
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_T = TypeVar("_T")
MAX_LOCK_TIMEOUT = 60.0
"""Longest accepted ``ACGS_LOCK_TIMEOUT``: beyond a minute, a queue behind a strong lock is an
outage, whatever the retries."""


def _seconds(value: str) -> timedelta:
    return timedelta(seconds=float(value))


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"expected a boolean, got {value!r}")


def _identifier(value: str) -> str:
    if not _IDENTIFIER.match(value):
        raise ValueError(f"{value!r} is not a plain lower-case SQL identifier")
    return value


def _optional_str(value: str) -> str | None:
    return value or None


POOLERS = ("none", "session", "transaction")


def _pooler(value: str) -> str:
    lowered = value.strip().lower()
    if lowered not in POOLERS:
        raise ValueError(f"expected one of {', '.join(POOLERS)}")
    return lowered


_RETENTION = re.compile(r"(?:\s*\d{1,6}\s*(?:years?|mons?|months?|weeks?|days?)\s*)+")
_RETENTION_PART = re.compile(r"(\d+)\s*(year|mon|week|day)")
_RETENTION_MAX_MONTHS = 1200  # 100 years: anything longer is a typo


def retention_interval(value: object) -> str:
    """A retention of at least one month, as its canonical text (``"13 months"``).

    Accepted: whole numbers of years, months, weeks and days (``"1 year"``, ``"2 years 6
    months"``, ``"400 days"``); at least one month, or 31 days when given in days and weeks;
    at most 100 years. Refused, because pg_partman would drop partitions by it: a bare number,
    hours/minutes/seconds, zero, negative and anything else. The canonical text counts months
    (years as 12) and days (weeks as 7): ``"30 months"``, ``"400 days"``, ``"1 month 5 days"``.
    """
    if not isinstance(value, str):
        raise ValueError(f"must be text such as '13 months', got {type(value).__name__}")
    text = value.strip().lower()
    if re.fullmatch(r"[+-]?\d+(\.\d*)?", text):
        raise ValueError("a bare number has no unit; write e.g. '13 months' or '400 days'")
    if text.startswith("-") or re.search(r"-\s*\d", text):
        raise ValueError("must not be negative")
    if not _RETENTION.fullmatch(text):
        raise ValueError(
            "must be whole years, months, weeks or days such as '13 months', '1 year' or "
            "'400 days' (hours, minutes and seconds are refused)"
        )
    months = days = 0
    for number, unit in _RETENTION_PART.findall(text):
        amount = int(number)
        if unit == "year":
            months += 12 * amount
        elif unit == "mon":
            months += amount
        elif unit == "week":
            days += 7 * amount
        else:
            days += amount
    if months == 0 and days < 31:
        raise ValueError("is shorter than one month (at least '1 month' or '31 days')")
    if months + days // 31 > _RETENTION_MAX_MONTHS:
        raise ValueError("is longer than 100 years")
    parts = []
    if months:
        parts.append(f"{months} month" + ("s" if months != 1 else ""))
    if days:
        parts.append(f"{days} day" + ("s" if days != 1 else ""))
    return " ".join(parts)


def premake_count(value: object) -> int:
    """A whole number of premade monthly partitions, at least 1."""
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise ValueError("must be a whole number of months, at least 1") from None
    if type(value) is not int:
        raise ValueError(f"must be a whole number of months, got {type(value).__name__}")
    if value < 1:
        raise ValueError("must be at least 1 (partitions pg_partman keeps ready ahead)")
    return value


MIN_BATCH_LEDGER_RETENTION = 3600.0
"""Shortest accepted ``ACGS_BATCH_LEDGER_RETENTION`` (seconds): a purged ledger row no longer
stops a retry of its batch from writing it again, so rows must outlive every retry."""


def batch_ledger_retention(value: object) -> float:
    """Seconds ``ingest_batches`` rows are kept: 0 (never purged) or at least an hour."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected seconds, got {type(value).__name__}")
    seconds = float(value)
    if not math.isfinite(seconds) or (
        seconds != 0 and not MIN_BATCH_LEDGER_RETENTION <= seconds <= 100 * 366 * 86400
    ):
        raise ValueError(
            f"expected 0 (never purge) or seconds from {MIN_BATCH_LEDGER_RETENTION:g} (an hour:"
            " a purged batch could be written again by a late retry) to 100 years"
        )
    return seconds


def slice_buckets(value: object) -> int:
    """A whole number of hour buckets per backlog slice, at least 1."""
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise ValueError("must be a whole number of hour buckets, at least 1") from None
    if type(value) is not int or value < 1:
        raise ValueError("must be a whole number of hour buckets, at least 1")
    return value


def _lock_timeout(value: str) -> float:
    seconds = float(value)
    if not 0 < seconds <= MAX_LOCK_TIMEOUT:
        raise ValueError(f"expected seconds above 0 and at most {MAX_LOCK_TIMEOUT:g}")
    return seconds


def _retries(value: str) -> int:
    count = int(value)
    if count < 0:
        raise ValueError("expected a count of 0 or more")
    return count


def _replica_urls(value: str) -> tuple[str, ...]:
    """Comma-separated libpq URLs of hot standbys (blank entries ignored)."""
    urls = tuple(part.strip() for part in value.split(",") if part.strip())
    for url in urls:
        if not url.startswith(("postgresql://", "postgres://")):
            raise ValueError("expected comma-separated postgresql:// URLs")
    return urls


def replica_lag(value: object) -> float:
    """Seconds of a standby's accepted lag: a finite number above 0."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"expected seconds above 0, got {type(value).__name__}")
    seconds = float(value)
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError("expected seconds above 0")
    return seconds


def _timeout(value: str) -> float:
    seconds = float(value)
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ValueError("expected seconds, 0 or more (0: no limit)")
    return seconds


_VALIDATED: dict[str, Callable[[Any], Any]] = {
    "retention": retention_interval,
    "premake": premake_count,
    "max_replica_lag": replica_lag,
    "batch_ledger_retention": batch_ledger_retention,
    "backlog_slice_buckets": slice_buckets,
}


@dataclass(frozen=True, slots=True)
class Settings:
    """All settings of acgs-db; build one with :meth:`from_env`."""

    database_url: str | None = field(default=None, metadata={"env": "DATABASE_URL"})
    """libpq URL of the database; unset means the embedded development cluster."""
    schema: str = field(default="public", metadata={"parse": _identifier})
    """Schema that holds the audit store's tables."""
    pool_min_size: int = 10
    pool_max_size: int = 50
    command_timeout: float = 5.0
    """Seconds before a statement is cancelled client-side (the seed's 5 s)."""
    application_name: str = "acgs_constitutional_service"
    pool_reset: bool = False
    """Run asyncpg's reset query (RESET ALL, UNLISTEN *, ...) at every release: one more round
    trip per call. Off: pool connections must not be left with session state (SET, LISTEN)."""
    statement_cache_size: int = 100
    """asyncpg's prepared-statement cache per connection; 0 behind PgBouncer (transaction mode)."""
    pooler: str = field(default="none", metadata={"parse": _pooler})
    """What the database URL reaches: ``none`` (PostgreSQL itself), or PgBouncer in ``session``
    or ``transaction`` pooling mode. Behind PgBouncer only the startup parameters it forwards are
    sent (the schema must be the login's default ``search_path``); ``transaction`` also turns
    the statement cache off and refuses what cannot work there (see README, "PgBouncer")."""
    replica_urls: tuple[str, ...] = field(default=(), metadata={"parse": _replica_urls})
    """libpq URLs of hot standbys of the database (comma-separated): the repository reads
    ``history()``, ``decision_scores()`` and ``tenant_metrics()`` from them (see README,
    "Replicas"); empty: everything on the primary."""
    max_replica_lag: float = field(default=1.0, metadata={"parse": replica_lag})
    """Seconds a standby may be behind the primary and still serve reads (above 0)."""
    max_clock_skew: timedelta = field(default=timedelta(minutes=5), metadata={"parse": _seconds})
    """How far in the future a record's ``created_at`` may lie (seconds)."""
    max_details_bytes: int = 65536
    """Largest accepted ``validation_details`` document, in bytes of JSON text."""
    max_processing_time_ms: int = 86_400_000
    """Largest plausible ``processing_time_ms`` (one day)."""
    copy_timeout: float | None = field(default=None, metadata={"parse": float})
    """Seconds a bulk insert's COPY may take; unset means no limit (not command_timeout)."""
    refresh_interval: float = 300.0
    """Seconds between refreshes of the 24-hour metrics view."""
    backlog_slice_buckets: int = field(default=6, metadata={"parse": slice_buckets})
    """Hour buckets of the rollup's backlog (deltas older than the 24-hour window) folded per
    slice by the refresher between refreshes and by ``acgs-db maintain`` (at least 1)."""
    metrics_staleness: float | None = field(default=None, metadata={"parse": float})
    """Seconds after which the view counts as stale; unset means twice the refresh interval."""
    retention: str = field(default="13 months", metadata={"parse": retention_interval})
    """How long pg_partman keeps monthly partitions before dropping them: at least one month
    (see :func:`retention_interval`), kept in canonical form."""
    premake: int = field(default=4, metadata={"parse": premake_count})
    """How many monthly partitions pg_partman keeps ready ahead (and creates behind); >= 1."""
    lock_timeout: float = field(default=2.0, metadata={"parse": _lock_timeout})
    """Seconds a migration step or the partition maintenance may wait for a table lock before
    it gives up (and retries): while it waits, every reader and writer queues behind it."""
    lock_retries: int = field(default=5, metadata={"parse": _retries})
    """How many times a step that hit the lock timeout is tried again, with backoff."""
    statement_timeout: float = field(default=30.0, metadata={"parse": _timeout})
    """Server-side ``statement_timeout`` of pool sessions, seconds (0: none). COPY and the
    refresh lift it for their own transaction."""
    idle_in_transaction_timeout: float = field(default=60.0, metadata={"parse": _timeout})
    """Server-side ``idle_in_transaction_session_timeout`` of pool sessions, seconds (0: none):
    a session left idle in an open transaction is ended by the server, releasing its locks."""
    recover_after: float = field(default=60.0, metadata={"parse": _timeout})
    """Age in seconds after which the refresher and ``acgs-db maintain`` settle prepared parts
    of a multi-connection bulk insert whose writer died."""
    batch_ledger_retention: float = field(default=86400.0, metadata={"parse": float})
    """Seconds the batch ledger (``ingest_batches``) keeps a batch's row, which makes a retry
    of that batch write nothing: 0 never purges, else at least 3600 (checked by
    :func:`batch_ledger_retention`). The refresher's loop and ``acgs-db maintain`` purge
    older rows."""
    dev_dir: Path | None = field(default=None, metadata={"parse": Path})
    """Folder of the embedded development cluster; unset means ``.acgs`` in the project."""
    cron_database: str = "postgres"
    """Database where pg_cron is installed (``cron.database_name``)."""
    owner_role: str = field(default="acgs_owner", metadata={"parse": _identifier})
    """NOLOGIN role that owns every object of the store (migration 0007), so that SECURITY
    DEFINER functions run with the store's privileges only."""
    writer_role: str = field(default="acgs_writer", metadata={"parse": _identifier})
    """Group role that may insert and read validations and use the cache."""
    reader_role: str = field(default="acgs_reader", metadata={"parse": _identifier})
    """Group role that may only read."""
    refresher_role: str = field(default="acgs_refresher", metadata={"parse": _identifier})
    """Group role that may only run the refresh (and fold) functions."""
    tenant_role: str = field(default="acgs_tenant", metadata={"parse": _identifier})
    """Group role of tenant logins: each sees only the tenant its login is bound to
    (``acgs-db tenant-login grant``)."""

    def __post_init__(self) -> None:
        """Settings that can drop data are checked however the object is built (from the
        environment, ``from_env(**overrides)`` or the constructor); retention is stored in its
        canonical form."""
        for name, check in _VALIDATED.items():
            value = getattr(self, name)
            try:
                canonical = check(value)
            except ValueError as exc:
                raise ConfigurationError(f"{PREFIX}{name.upper()}={value!r}: {exc}") from None
            object.__setattr__(self, name, canonical)

    @property
    def staleness(self) -> timedelta:
        """Age after which :meth:`ValidationRepository.tenant_metrics` stops trusting the view."""
        seconds = self.metrics_staleness
        return timedelta(seconds=2 * self.refresh_interval if seconds is None else seconds)

    @property
    def dev_root(self) -> Path:
        """Folder of the embedded cluster: ``ACGS_DEV_DIR``, else ``.acgs`` in the project."""
        if self.dev_dir is not None:
            return self.dev_dir
        return project_root() / ".acgs"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read ``ACGS_<FIELD>`` variables; keyword overrides win over the environment."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = PREFIX + f.metadata.get("env", f.name.upper())
            raw = env.get(name)
            if raw is None or raw == "":
                continue
            parse: Callable[[str], Any] = f.metadata.get("parse") or _parser_for(f.type)
            try:
                values[f.name] = parse(raw)
            except ValueError as exc:
                raise ConfigurationError(f"{name}={raw!r}: {exc}") from exc
        settings = cls(**values)
        return replace(settings, **overrides) if overrides else settings


def project_root() -> Path:
    """The source checkout this package runs from, else the current directory."""
    here = Path(__file__).resolve().parent.parent
    return here if (here / "pyproject.toml").exists() else Path.cwd()


def _parser_for(annotation: Any) -> Callable[[str], Any]:
    text = str(annotation)
    if text.startswith("int"):
        return int
    if text.startswith("float"):
        return float
    if text.startswith("bool"):
        return _bool
    if "None" in text:
        return _optional_str
    return str
