"""The history look-up against the same query run directly on the one partition holding the data.

``acgs_history()`` (migration 0013) walks the partitions newest first; the goal (issue 13) is
that it costs what the partition it reads costs, whatever the retention holds: at 18 partitions,
at least 0.85x the TPS of ``sql/bench/history_partition.sql``, the same look-up written against
that one partition, measured in the same run. Rounds alternate (walk, partition, walk, ...) so
that a machine whose load drifts weighs on both sides alike; the figures compared are medians.

The partition is the one with the most rows (``pg_class.reltuples`` after the loader's ANALYZE),
its name read from the catalog and quoted by the server (``quote_ident``); the result says what
share of the table's rows it holds, since the two look-ups give the same answer only when the
data lies in that partition (load with ``--days`` inside the current month).
"""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psycopg

from acgs_db.bench.pgbench import RunOptions, RunResult, connect, prepare_run
from acgs_db.errors import AcgsDbError
from acgs_db.resources import load_sql
from acgs_db.settings import Settings

PLACEHOLDER = "PARTITION_NAME"


@dataclass(frozen=True, slots=True)
class DataPartition:
    """The partition holding the most rows, its share of the rows and the partition count."""

    name: str
    share: float
    partitions: int


def data_partition(conn: psycopg.Connection[tuple[Any, ...]]) -> DataPartition:
    """The partition of ``constitutional_validations`` holding the most rows."""
    row = conn.execute(load_sql("bench/data_partition")).fetchone()
    if row is None or row[1] is None:
        raise AcgsDbError("constitutional_validations has no analysed rows: run acgs-db load")
    return DataPartition(str(row[0]), float(row[1]), int(row[2]))


def partition_script(partition: str, folder: Path) -> Path:
    """``sql/bench/history_partition.sql`` with the partition's (server-quoted) name in it."""
    text = load_sql("bench/history_partition")
    body = "\n".join(line for line in text.splitlines() if not line.startswith("--"))
    path = folder / "history_partition.sql"
    path.write_text(body.replace(PLACEHOLDER, partition) + ";\n", encoding="utf-8")
    return path


@dataclass(frozen=True, slots=True)
class BaselineResult:
    """Alternating rounds of the history script and of the same look-up on one partition."""

    walk: list[RunResult]
    partition: list[RunResult]
    data: DataPartition

    @staticmethod
    def _median(runs: list[RunResult], figure: str) -> float | None:
        values = []
        for run in runs:
            value = run.tps if figure == "tps" else getattr(run.latency_ms, figure, None)
            if value is not None:
                values.append(float(value))
        return statistics.median(values) if values else None

    def median(self, side: str, figure: str) -> float | None:
        """Median ``tps`` or latency ``p50``/``p99`` (ms) of ``walk`` or ``partition``."""
        return self._median(self.walk if side == "walk" else self.partition, figure)

    @property
    def tps_ratio(self) -> float:
        """The walk's median TPS over the one partition's (the goal: at least 0.85)."""
        walk, one = self.median("walk", "tps"), self.median("partition", "tps")
        return round(walk / one, 3) if walk is not None and one else 0.0

    @property
    def round_ratios(self) -> list[float]:
        """Each round's walk TPS over the partition TPS of the same round."""
        return [
            round(w.tps / p.tps, 3) if p.tps else 0.0
            for w, p in zip(self.walk, self.partition, strict=True)
        ]

    def to_json(self) -> dict[str, Any]:
        """The JSON ``acgs-db bench pgbench --script history --partition-baseline`` writes."""
        figures = ("tps", "p50", "p99")
        return {
            "kind": "pgbench-partition-baseline",
            "rounds": len(self.walk),
            "partition": self.data.name,
            "partition_share_of_rows": round(self.data.share, 4),
            "partitions": self.data.partitions,
            "walk": [run.to_json() for run in self.walk],
            "one_partition": [run.to_json() for run in self.partition],
            "median": {
                side: {f: self.median(side, f) for f in figures} for side in ("walk", "partition")
            },
            "tps_ratio": self.tps_ratio,
            "round_ratios": self.round_ratios,
        }


def run_partition_baseline(
    url: str,
    options: RunOptions,
    *,
    settings: Settings | None = None,
    tenants: int | None = None,
    decisions: int | None = None,
    rounds: int = 3,
    on_tick: Callable[[str, float], None] | None = None,
) -> BaselineResult:
    """Run the history script and the one-partition look-up ``rounds`` times each, alternating."""
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    settings = settings or Settings.from_env()
    walk_run = prepare_run(url, options, settings=settings, tenants=tenants, decisions=decisions)
    with connect(url, settings) as conn:
        data = data_partition(conn)

    def ticker(label: str) -> Callable[[float], None] | None:
        if on_tick is None:
            return None
        return lambda elapsed: on_tick(label, elapsed)

    walk: list[RunResult] = []
    partition: list[RunResult] = []
    with tempfile.TemporaryDirectory(prefix="acgs-baseline-") as folder:
        one_run = replace(walk_run, script_file=partition_script(data.name, Path(folder)))
        for round_no in range(1, rounds + 1):
            walk.append(walk_run.execute(on_tick=ticker(f"walk {round_no}")))
            partition.append(one_run.execute(on_tick=ticker(f"one partition {round_no}")))
    return BaselineResult(walk, partition, data)
