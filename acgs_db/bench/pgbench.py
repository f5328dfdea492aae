"""pgbench, driven from Python: the project's scripts, the per-transaction log, percentiles.

A run is ``pgbench --no-vacuum --protocol=prepared`` with one script of ``sql/pgbench``, the
requested clients, threads (``--jobs``), duration and optional fixed rate (``--rate``), and
``--log`` into a temporary folder. The log has one line per transaction (pgbench 15)::

    client_id transaction_no time script_no time_epoch time_us [schedule_lag] [retries]

``time`` is the transaction's latency in microseconds, or ``failed`` / ``serialization`` /
``deadlock`` (``--failures-detailed``) for a failed one and ``skipped`` for one dropped by
``--latency-limit``; ``schedule_lag`` is present with ``--rate`` and ``retries`` when
``--max-tries`` is not 1. Under ``--rate`` the latency is counted from the scheduled start, so
it includes the schedule lag, as a request's time would. Percentiles are nearest-rank values
of every successful transaction, not pgbench's averages.

The scripts name the loader's tenants and decisions (:mod:`acgs_db.tooling.synthetic`), so the
wrapper passes ``-D tenants=.. -D decisions=..`` learnt from the data through indexes, and refuses
with one clear line a missing pgbench, an unmigrated database or an empty table.
"""

from __future__ import annotations

import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import psycopg

from acgs_db.errors import AcgsDbError, ConfigurationError, SchemaNotReadyError
from acgs_db.resources import load_sql, sql_dir
from acgs_db.settings import Settings

APPLICATION_NAME = "acgs_db_pgbench"
CACHE_MAX_AGE = "300 seconds"
"""The cache look-up's freshness bound: ``get_cached_decision``'s default ``max_age``."""
LOG_PREFIX = "pgbench_log"
_GRACE_S = 60.0
"""Seconds a run may outlast its duration (connections, the final report) before it is killed."""


class ScriptName(StrEnum):
    """The pgbench scripts of ``sql/pgbench``."""

    HISTORY = "history"
    DECISION = "decision"
    METRICS = "metrics"
    CACHE = "cache"
    INSERT = "insert"
    MIXED = "mixed"


@dataclass(frozen=True, slots=True)
class Script:
    """A pgbench script: its file, how many statements one transaction runs, what it models."""

    name: ScriptName
    statements: int
    description: str
    refresh_view: bool = False
    """Refresh the 24-hour view first, so that the look-up is answered by the view."""
    warm_cache: bool = False
    """Make the decision cache fresh first, so that look-ups hit."""

    @property
    def path(self) -> Path:
        return sql_dir() / "pgbench" / f"{self.name.value}.sql"


SCRIPTS: Mapping[ScriptName, Script] = {
    s.name: s
    for s in (
        Script(ScriptName.HISTORY, 1, "history look-up: a decision's last 10 validations"),
        Script(ScriptName.DECISION, 1, "decision look-up: every score of a decision"),
        Script(ScriptName.METRICS, 1, "a tenant's 24-hour metrics", refresh_view=True),
        Script(ScriptName.CACHE, 1, "decision-cache look-up", warm_cache=True),
        Script(ScriptName.INSERT, 1, "one validation, single-row INSERT"),
        Script(
            ScriptName.MIXED,
            4,
            "one validation request: cache look-up, history, insert, cache upsert",
            warm_cache=True,
        ),
    )
}


# -- the per-transaction log ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Percentiles:
    """Nearest-rank percentiles of a sample, in milliseconds."""

    p50: float
    p95: float
    p99: float
    max: float
    min: float
    mean: float

    @classmethod
    def of(cls, micros: Sequence[int]) -> Percentiles | None:
        """Percentiles of durations given in microseconds; None for an empty sample."""
        if not micros:
            return None
        ordered = sorted(micros)
        n = len(ordered)

        def rank(p: float) -> float:
            return ordered[max(math.ceil(p / 100 * n) - 1, 0)] / 1000

        return cls(
            p50=rank(50),
            p95=rank(95),
            p99=rank(99),
            max=ordered[-1] / 1000,
            min=ordered[0] / 1000,
            mean=sum(ordered) / n / 1000,
        )

    def to_json(self) -> dict[str, float]:
        return {k: round(v, 3) for k, v in asdict(self).items()}


@dataclass(slots=True)
class TransactionLog:
    """The per-transaction log of one run, summarised."""

    latencies_us: list[int] = field(default_factory=list)
    """Latency of every successful transaction."""
    lags_us: list[int] = field(default_factory=list)
    """Schedule lag of every transaction that ran (only with ``--rate``)."""
    failed: int = 0
    serialization_failures: int = 0
    deadlock_failures: int = 0
    skipped: int = 0
    retries: int = 0
    retried: int = 0
    first_start_us: int | None = None
    last_end_us: int | None = None

    @property
    def transactions(self) -> int:
        """Successful transactions."""
        return len(self.latencies_us)

    @property
    def failures(self) -> int:
        """Transactions that ended in an error (after their last try)."""
        return self.failed + self.serialization_failures + self.deadlock_failures

    @property
    def elapsed_s(self) -> float:
        """From the first transaction's (scheduled) start to the last one's end."""
        if self.first_start_us is None or self.last_end_us is None:
            return 0.0
        return max(self.last_end_us - self.first_start_us, 0) / 1e6

    @property
    def tps(self) -> float:
        """Successful transactions per second over :attr:`elapsed_s`."""
        elapsed = self.elapsed_s
        return self.transactions / elapsed if elapsed > 0 else 0.0

    def add_line(self, line: str, *, throttled: bool, with_retries: bool) -> None:
        """Account for one log line; raise AcgsDbError when it is not pgbench 15's format."""
        fields = line.split()
        expected = 6 + throttled + with_retries
        if len(fields) != expected or not all(f.isdigit() for f in fields[4:]):
            raise AcgsDbError(
                f"unexpected pgbench log line (expected {expected} fields): {line.strip()!r}"
            )
        end = int(fields[4]) * 1_000_000 + int(fields[5])
        outcome = fields[2]
        lag = int(fields[6]) if throttled else 0
        if with_retries:
            retries = int(fields[-1])
            self.retries += retries
            self.retried += retries > 0
        start = end
        if outcome.isdigit():
            latency = int(outcome)
            self.latencies_us.append(latency)
            start = end - latency
            if throttled:
                self.lags_us.append(lag)
        elif outcome == "skipped":
            self.skipped += 1
        elif outcome == "failed":
            self.failed += 1
        elif outcome == "serialization":
            self.serialization_failures += 1
        elif outcome == "deadlock":
            self.deadlock_failures += 1
        else:
            raise AcgsDbError(f"unexpected pgbench log line: {line.strip()!r}")
        if outcome != "skipped":
            if self.first_start_us is None or start < self.first_start_us:
                self.first_start_us = start
            if self.last_end_us is None or end > self.last_end_us:
                self.last_end_us = end


def parse_log(
    lines: Iterable[str], *, throttled: bool = False, with_retries: bool = False
) -> TransactionLog:
    """Summarise per-transaction log lines (``throttled``: run with ``--rate``;
    ``with_retries``: run with ``--max-tries`` other than 1)."""
    log = TransactionLog()
    for line in lines:
        if line.strip():
            log.add_line(line, throttled=throttled, with_retries=with_retries)
    return log


def read_logs(folder: Path, *, throttled: bool, with_retries: bool) -> TransactionLog:
    """Read every log file pgbench wrote into ``folder`` (one per thread)."""
    log = TransactionLog()
    for path in sorted(folder.glob(f"{LOG_PREFIX}.*")):
        with path.open(encoding="ascii") as handle:
            for line in handle:
                if line.strip():
                    log.add_line(line, throttled=throttled, with_retries=with_retries)
    return log


_SUMMARY = {
    "transactions": re.compile(r"^number of transactions actually processed: (\d+)", re.M),
    "failed": re.compile(r"^number of failed transactions: (\d+)", re.M),
    "skipped": re.compile(r"^number of transactions skipped: (\d+)", re.M),
    "tps": re.compile(r"^tps = ([0-9.]+)", re.M),
}


def parse_summary(stdout: str) -> dict[str, float | int | None]:
    """pgbench's own final report (transactions, failed, skipped, tps), for cross-checks."""
    found: dict[str, float | int | None] = {}
    for key, pattern in _SUMMARY.items():
        match = pattern.search(stdout)
        if match is None:
            found[key] = None
        else:
            found[key] = float(match[1]) if key == "tps" else int(match[1])
    return found


# -- the database side ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DataShape:
    """The loaded data as a benchmark sees it."""

    tenants: int
    decisions: int
    table_rows: int
    """Estimated by ANALYZE (``pg_class.reltuples`` of the partitions), not counted."""
    cache_entries: int
    server_version: str


_TENANT = re.compile(r"^tenant-(\d{4,})$")
_DECISION = re.compile(r"^decision-0000-(\d{7,})$")
_NOT_LOADER_IDS = (
    "the stored ids are not the loader's ({found!r}); load data with `acgs-db load`, "
    "or pass --tenants and --decisions"
)


def connect(url: str, settings: Settings) -> psycopg.Connection:
    """An autocommit connection in the audit store's schema; one clear error when it fails."""
    try:
        return psycopg.connect(
            url,
            autocommit=True,
            options=f"-c search_path={settings.schema}",
            application_name=APPLICATION_NAME,
            connect_timeout=10,
        )
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigurationError(f"cannot connect to the database: {reason}") from None


def inspect_data(
    conn: psycopg.Connection,
    *,
    tenants: int | None = None,
    decisions: int | None = None,
) -> DataShape:
    """Check the schema and the data, and learn the tenant and decision counts from the ids.

    Raises :class:`SchemaNotReadyError` for an unmigrated database and
    :class:`ConfigurationError` for an empty table or ids the loader did not write.
    """
    ready = conn.execute(load_sql("bench/schema_ready")).fetchone()
    if not ready or not ready[0]:
        raise SchemaNotReadyError(
            "the database has no constitutional_validations table: run `acgs-db migrate` first"
        )
    row = conn.execute(load_sql("bench/shape")).fetchone()
    assert row is not None
    first_tenant, last_tenant, last_decision, estimated, cache_entries, version = row
    if last_tenant is None:
        raise ConfigurationError(
            "constitutional_validations is empty: load data first (`acgs-db load`)"
        )
    if tenants is None:
        match = _TENANT.match(last_tenant)
        if first_tenant != "tenant-0000" or match is None:
            raise ConfigurationError(_NOT_LOADER_IDS.format(found=last_tenant))
        tenants = int(match[1]) + 1
    if decisions is None:
        match = _DECISION.match(last_decision or "")
        if match is None:
            raise ConfigurationError(_NOT_LOADER_IDS.format(found=last_decision))
        decisions = int(match[1]) + 1
    return DataShape(tenants, decisions, int(estimated), int(cache_entries), str(version))


def prepare(conn: psycopg.Connection, script: Script) -> None:
    """Bring the state a script expects: a fresh 24-hour view, a warm decision cache."""
    if script.refresh_view:
        conn.execute(load_sql("queries/refresh"))
    if script.warm_cache:
        conn.execute(load_sql("bench/touch_cache"))


# -- running pgbench --------------------------------------------------------------------------


def find_pgbench(debian_root: Path = Path("/usr/lib/postgresql")) -> Path:
    """Locate ``pgbench``: ``PATH``, then ``pg_config --bindir``, then Debian's folders."""
    candidates: list[Path] = []
    on_path = shutil.which("pgbench")
    if on_path:
        candidates.append(Path(on_path))
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], check=True, capture_output=True, text=True
            ).stdout.strip()
            candidates.append(Path(out) / "pgbench")
        except (OSError, subprocess.CalledProcessError):
            pass
    candidates.extend(sorted(debian_root.glob("*/bin/pgbench"), key=_version_key, reverse=True))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise ConfigurationError(
        f"pgbench was not found on PATH, through pg_config or in {debian_root}/*/bin; "
        "install it: apt-get install postgresql-15 (Debian ships pgbench with the server)"
    )


def _version_key(path: Path) -> int:
    version = path.parent.parent.name
    return int(version) if version.isdigit() else 0


def pgbench_version(pgbench: Path) -> str:
    """``pgbench --version``, e.g. ``pgbench (PostgreSQL) 15.18 (Debian ...)``."""
    out = subprocess.run([str(pgbench), "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip()


@dataclass(frozen=True, slots=True)
class RunOptions:
    """How to run one script."""

    script: ScriptName = ScriptName.HISTORY
    clients: int = 8
    threads: int = 2
    duration: int = 20
    """Seconds (``--time``)."""
    rate: float | None = None
    """Transactions per second to schedule (``--rate``); None runs flat out."""
    max_tries: int = 1
    latency_limit_ms: float | None = None
    """``--latency-limit``: with ``rate``, transactions already this late are skipped."""
    protocol: str = "prepared"
    """``--protocol``: ``prepared`` (named statements, as the repository's statement cache),
    or ``extended`` (unnamed, what PgBouncer 1.18 in transaction pooling can carry)."""

    def check(self) -> None:
        """Refuse options pgbench would refuse, before starting it."""
        if self.clients < 1 or self.threads < 1 or self.duration < 1:
            raise ConfigurationError("clients, threads and duration must be at least 1")
        if self.threads > self.clients:
            raise ConfigurationError(
                f"threads ({self.threads}) must not exceed clients ({self.clients})"
            )
        if self.rate is not None and not self.rate > 0:
            raise ConfigurationError(f"rate must be positive, got {self.rate}")
        if self.max_tries < 1:
            raise ConfigurationError(f"max_tries must be at least 1, got {self.max_tries}")
        if self.latency_limit_ms is not None and not self.latency_limit_ms > 0:
            raise ConfigurationError("latency_limit_ms must be positive")
        if self.protocol not in ("prepared", "extended", "simple"):
            raise ConfigurationError(f"unknown pgbench protocol {self.protocol!r}")


def command(
    pgbench: Path,
    script_file: Path,
    options: RunOptions,
    variables: Mapping[str, str],
    log_prefix: Path,
) -> list[str]:
    """The pgbench argument list (the database comes from ``PGDATABASE``, not argv)."""
    args = [
        str(pgbench),
        "--no-vacuum",
        f"--protocol={options.protocol}",
        f"--client={options.clients}",
        f"--jobs={options.threads}",
        f"--time={options.duration}",
        f"--file={script_file}",
        "--log",
        f"--log-prefix={log_prefix}",
        "--failures-detailed",
        f"--max-tries={options.max_tries}",
    ]
    if options.rate is not None:
        args.append(f"--rate={options.rate:g}")
    if options.latency_limit_ms is not None:
        args.append(f"--latency-limit={options.latency_limit_ms:g}")
    args.extend(f"--define={name}={value}" for name, value in variables.items())
    return args


def _environment(url: str, settings: Settings) -> dict[str, str]:
    """The URL in PGDATABASE (pgbench expands it like a dbname), out of the process list."""
    env = dict(os.environ)
    env["PGDATABASE"] = url
    env["PGOPTIONS"] = f"-c search_path={settings.schema}"
    env["PGAPPNAME"] = APPLICATION_NAME
    return env


def _error_line(stderr: str, returncode: int) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if "error" in line.lower() or "aborted" in line.lower() or "fatal" in line.lower():
            return line
    return lines[-1] if lines else f"exit status {returncode}"


def execute(
    pgbench: Path,
    url: str,
    settings: Settings,
    script_file: Path,
    options: RunOptions,
    variables: Mapping[str, str],
    *,
    on_tick: Callable[[float], None] | None = None,
) -> tuple[TransactionLog, str]:
    """Run pgbench once; return its summarised log and its standard output.

    ``on_tick(elapsed_s)`` is called about four times a second while it runs. A run that
    fails to start or whose clients abort raises :class:`AcgsDbError` with pgbench's line.
    """
    with tempfile.TemporaryDirectory(prefix="acgs-pgbench-") as folder:
        args = command(pgbench, script_file, options, variables, Path(folder) / LOG_PREFIX)
        started = time.monotonic()
        with subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_environment(url, settings),
            cwd=folder,
        ) as process:
            try:
                while True:
                    try:
                        stdout, stderr = process.communicate(timeout=0.25)
                        break
                    except subprocess.TimeoutExpired:
                        elapsed = time.monotonic() - started
                        if elapsed > options.duration + _GRACE_S:
                            raise AcgsDbError(
                                f"pgbench did not finish {_GRACE_S:.0f} s after its "
                                f"{options.duration} s run; it was stopped"
                            ) from None
                        if on_tick is not None:
                            on_tick(elapsed)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
        if process.returncode != 0:
            raise AcgsDbError(
                f"pgbench failed (exit {process.returncode}): "
                f"{_error_line(stderr, process.returncode)}"
            )
        log = read_logs(
            Path(folder), throttled=options.rate is not None, with_retries=options.max_tries != 1
        )
    return log, stdout


# -- one benchmark run ------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """Where the figures were measured (they mean little without it)."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        memory = float("nan")
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "memory_gib": round(memory, 1),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "python": sys.version.split()[0],
    }


@dataclass(frozen=True, slots=True)
class RunResult:
    """The figures of one pgbench run, and what they were measured on."""

    options: RunOptions
    statements: int
    log: TransactionLog
    reported: dict[str, float | int | None]
    data: DataShape
    pgbench_version: str
    machine: dict[str, Any]
    started_at: datetime

    @property
    def tps(self) -> float:
        return self.log.tps

    @property
    def latency_ms(self) -> Percentiles | None:
        return Percentiles.of(self.log.latencies_us)

    @property
    def lag_ms(self) -> Percentiles | None:
        return Percentiles.of(self.log.lags_us)

    def to_json(self) -> dict[str, Any]:
        """The JSON ``acgs-db bench pgbench --json`` writes (``kind: "pgbench"``)."""
        latency, lag = self.latency_ms, self.lag_ms
        return {
            "kind": "pgbench",
            "script": self.options.script.value,
            "description": SCRIPTS[self.options.script].description,
            "clients": self.options.clients,
            "threads": self.options.threads,
            "duration_s": self.options.duration,
            "rate": self.options.rate,
            "max_tries": self.options.max_tries,
            "latency_limit_ms": self.options.latency_limit_ms,
            "query_mode": self.options.protocol,
            "statements_per_transaction": self.statements,
            "transactions": self.log.transactions,
            "failures": self.log.failures,
            "serialization_failures": self.log.serialization_failures,
            "deadlock_failures": self.log.deadlock_failures,
            "skipped": self.log.skipped,
            "retries": self.log.retries,
            "elapsed_s": round(self.log.elapsed_s, 3),
            "tps": round(self.tps, 2),
            "latency_ms": latency.to_json() if latency else None,
            "lag_ms": lag.to_json() if lag else None,
            "pgbench_reported": self.reported,
            "data": {
                "tenants": self.data.tenants,
                "decisions": self.data.decisions,
                "table_rows": self.data.table_rows,
                "cache_entries": self.data.cache_entries,
            },
            "server_version": self.data.server_version,
            "pgbench_version": self.pgbench_version,
            "machine": self.machine,
            "started_at": self.started_at.isoformat(timespec="seconds"),
        }


@dataclass(frozen=True, slots=True)
class PreparedRun:
    """A run whose database was checked and prepared; :meth:`execute` starts pgbench."""

    url: str
    settings: Settings
    options: RunOptions
    program: Path
    script_file: Path
    statements: int
    data: DataShape
    variables: Mapping[str, str]

    def execute(self, *, on_tick: Callable[[float], None] | None = None) -> RunResult:
        """Run pgbench and summarise its log (see :func:`execute`)."""
        machine = machine_info()
        started_at = datetime.now(UTC)
        log, stdout = execute(
            self.program,
            self.url,
            self.settings,
            self.script_file,
            self.options,
            self.variables,
            on_tick=on_tick,
        )
        return RunResult(
            options=self.options,
            statements=self.statements,
            log=log,
            reported=parse_summary(stdout),
            data=self.data,
            pgbench_version=pgbench_version(self.program),
            machine=machine,
            started_at=started_at,
        )


def prepare_run(
    url: str,
    options: RunOptions,
    *,
    settings: Settings | None = None,
    tenants: int | None = None,
    decisions: int | None = None,
    script_file: Path | None = None,
    pgbench: Path | None = None,
) -> PreparedRun:
    """Check the options, pgbench and the database, and bring the state the script expects.

    ``tenants``/``decisions`` override what is learnt from the ids; ``script_file`` runs
    another file than the project's script (with the same variables, and no preparation).
    """
    settings = settings or Settings.from_env()
    options.check()
    program = pgbench or find_pgbench()
    script = SCRIPTS[options.script]
    with connect(url, settings) as conn:
        data = inspect_data(conn, tenants=tenants, decisions=decisions)
        if script_file is None:
            prepare(conn, script)
    variables = {
        "tenants": str(data.tenants),
        "decisions": str(data.decisions),
        "staleness": f"{settings.staleness.total_seconds():g} seconds",
        "max_age": CACHE_MAX_AGE,
    }
    return PreparedRun(
        url=url,
        settings=settings,
        options=options,
        program=program,
        script_file=script_file or script.path,
        statements=script.statements,
        data=data,
        variables=variables,
    )


def run(
    url: str,
    options: RunOptions,
    *,
    settings: Settings | None = None,
    tenants: int | None = None,
    decisions: int | None = None,
    on_tick: Callable[[float], None] | None = None,
) -> RunResult:
    """Check and prepare the database, run pgbench with the script, summarise its log."""
    prepared = prepare_run(url, options, settings=settings, tenants=tenants, decisions=decisions)
    return prepared.execute(on_tick=on_tick)
