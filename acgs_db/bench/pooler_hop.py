"""The cost of the PgBouncer hop: one pgbench script run directly, then through PgBouncer.

Both runs use pgbench's extended protocol (unnamed statements): PgBouncer 1.18 in transaction
pooling carries no named prepared statements, so ``--protocol=prepared`` could not go through
it, and the direct run uses the same protocol so that the ratio is the hop alone. PgBouncer is
started for the run on a free loopback port in transaction pooling mode with as many server
connections as pgbench has clients (the pool is not what is measured), the schema set by its
``connect_query`` (PgBouncer forwards no ``search_path``).
"""

from __future__ import annotations

import statistics
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import unquote, urlsplit

from acgs_db.bench.pgbench import RunOptions, RunResult, prepare_run
from acgs_db.settings import Settings
from acgs_db.tooling.pgbouncer import PgBouncer, find_pgbouncer
from acgs_db.urls import password_of

PROTOCOL = "extended"


@dataclass(frozen=True, slots=True)
class HopResult:
    """Alternating runs of one script, directly and through PgBouncer, and PgBouncer's version.

    Rounds alternate (direct, PgBouncer, direct, ...) so that a machine whose load drifts
    during the measurement weighs on both sides alike; the figures compared are the medians."""

    direct: list[RunResult]
    pooled: list[RunResult]
    pgbouncer_version: str
    pooled_logins: int
    """Client logins PgBouncer saw during the pooled runs (pgbench's clients, every round)."""

    @staticmethod
    def _median(runs: list[RunResult], figure: str) -> float | None:
        values = []
        for run in runs:
            latency = run.latency_ms
            value = run.tps if figure == "tps" else getattr(latency, figure, None)
            if value is not None:
                values.append(float(value))
        return statistics.median(values) if values else None

    def median(self, side: str, figure: str) -> float | None:
        """Median ``tps`` or latency ``p50``/``p99``/``min`` (ms) of one side's rounds."""
        return self._median(self.direct if side == "direct" else self.pooled, figure)

    def ratio(self, figure: str) -> float | None:
        """PgBouncer's median over the direct median (TPS below 1, latency above 1: the hop)."""
        direct, pooled = self.median("direct", figure), self.median("pgbouncer", figure)
        return round(pooled / direct, 3) if direct and pooled is not None else None

    @property
    def tps_ratio(self) -> float:
        return self.ratio("tps") or 0.0

    def to_json(self) -> dict[str, Any]:
        """The JSON ``acgs-db bench pgbench --through-pgbouncer --json`` writes."""
        figures = ("tps", "p50", "p99", "min")
        return {
            "kind": "pgbench-pgbouncer-hop",
            "rounds": len(self.direct),
            "direct": [run.to_json() for run in self.direct],
            "pgbouncer": [run.to_json() for run in self.pooled],
            "median": {
                side: {f: self.median(side, f) for f in figures} for side in ("direct", "pgbouncer")
            },
            "ratio": {f: self.ratio(f) for f in figures},
            "pgbouncer_version": self.pgbouncer_version,
            "pool_mode": "transaction",
        }


def pgbouncer_version() -> str:
    out = subprocess.run(
        [str(find_pgbouncer()), "--version"], capture_output=True, text=True, check=False
    )
    return out.stdout.splitlines()[0].strip() if out.stdout else "unknown"


def run_hop(
    url: str,
    options: RunOptions,
    *,
    settings: Settings | None = None,
    tenants: int | None = None,
    decisions: int | None = None,
    rounds: int = 3,
    on_tick: Callable[[str, float], None] | None = None,
) -> HopResult:
    """Run ``options.script`` ``rounds`` times directly and as many through a PgBouncer of its
    own, alternating, on the same data."""
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    settings = settings or Settings.from_env()
    options = replace(options, protocol=PROTOCOL)
    prepared = prepare_run(url, options, settings=settings, tenants=tenants, decisions=decisions)
    parts = urlsplit(url)
    login = unquote(parts.username or "postgres")
    password = password_of(url)

    def ticker(label: str) -> Callable[[float], None] | None:
        if on_tick is None:
            return None
        return lambda elapsed: on_tick(label, elapsed)

    direct: list[RunResult] = []
    pooled: list[RunResult] = []
    with PgBouncer(
        url,
        logins={login: password},
        pool_size=options.clients,
        schema=settings.schema,
        ignore_startup_parameters=("options",),  # pgbench's PGOPTIONS search_path
    ) as bouncer:
        through = replace(prepared, url=bouncer.url_for(url))
        for round_no in range(1, rounds + 1):
            direct.append(prepared.execute(on_tick=ticker(f"direct {round_no}")))
            pooled.append(through.execute(on_tick=ticker(f"pgbouncer {round_no}")))
        logins = bouncer.log_text().count("login attempt")
    return HopResult(direct, pooled, pgbouncer_version(), logins)
