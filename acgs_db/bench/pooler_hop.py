"""The cost of the PgBouncer hop: one pgbench script run directly, then through PgBouncer.

Both runs use pgbench's extended protocol (unnamed statements): PgBouncer 1.18 in transaction
pooling carries no named prepared statements, so ``--protocol=prepared`` could not go through
it, and the direct run uses the same protocol so that the ratio is the hop alone. PgBouncer is
started for the run on a free loopback port in transaction pooling mode with as many server
connections as pgbench has clients (the pool is not what is measured), the schema set by its
``connect_query`` (PgBouncer forwards no ``search_path``).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import unquote, urlsplit

from acgs_db.bench.pgbench import RunOptions, RunResult, prepare_run
from acgs_db.pgbouncer import PgBouncer, find_pgbouncer
from acgs_db.settings import Settings

PROTOCOL = "extended"


@dataclass(frozen=True, slots=True)
class HopResult:
    """The two runs of one script, and PgBouncer's version."""

    direct: RunResult
    pooled: RunResult
    pgbouncer_version: str
    pooled_logins: int
    """Client logins PgBouncer saw during the pooled run (pgbench's clients)."""

    @property
    def tps_ratio(self) -> float:
        """Pooled TPS over direct TPS (below 1: the hop's cost)."""
        return self.pooled.tps / self.direct.tps if self.direct.tps else 0.0

    def to_json(self) -> dict[str, Any]:
        """The JSON ``acgs-db bench pgbench --through-pgbouncer --json`` writes."""
        direct, pooled = self.direct.latency_ms, self.pooled.latency_ms
        return {
            "kind": "pgbench-pgbouncer-hop",
            "direct": self.direct.to_json(),
            "pgbouncer": self.pooled.to_json(),
            "pgbouncer_version": self.pgbouncer_version,
            "pool_mode": "transaction",
            "tps_ratio": round(self.tps_ratio, 3),
            "p50_ratio": round(pooled.p50 / direct.p50, 3) if direct and pooled else None,
            "p99_ratio": round(pooled.p99 / direct.p99, 3) if direct and pooled else None,
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
    on_tick: Callable[[str, float], None] | None = None,
) -> HopResult:
    """Run ``options.script`` directly, then through a PgBouncer of its own, same data."""
    settings = settings or Settings.from_env()
    options = replace(options, protocol=PROTOCOL)
    prepared = prepare_run(url, options, settings=settings, tenants=tenants, decisions=decisions)
    parts = urlsplit(url)
    login = unquote(parts.username or "postgres")
    password = unquote(parts.password) if parts.password is not None else None

    def ticker(label: str) -> Callable[[float], None] | None:
        if on_tick is None:
            return None
        return lambda elapsed: on_tick(label, elapsed)

    direct = prepared.execute(on_tick=ticker("direct"))
    with PgBouncer(
        url,
        logins={login: password},
        pool_size=options.clients,
        schema=settings.schema,
        ignore_startup_parameters=("options",),  # pgbench's PGOPTIONS search_path
    ) as bouncer:
        pooled = replace(prepared, url=bouncer.url_for(url)).execute(on_tick=ticker("pgbouncer"))
        logins = bouncer.log_text().count("login attempt")
    return HopResult(direct, pooled, pgbouncer_version(), logins)
