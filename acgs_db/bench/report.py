"""The seed documents' targets beside the figures measured with pgbench (and the loader).

Which measurement answers which target:

- seed 000, database query P99 < 10 ms: p99 of the ``history`` script (the audit store's
  main read) run flat out.
- seed 000, 500 constitutional validations/s: TPS of the ``mixed`` script flat out; one
  transaction of it is one validation request (cache look-up, history, insert, cache upsert).
- seed 000, 2000 database operations/s: the same run's TPS times its 4 statements.
- seed 001, load (150 RPS) and stress (300 RPS): the ``mixed`` script at ``--rate 150`` and
  ``--rate 300``; the rate is sustained when the achieved TPS is within 5 % of it (arrivals are
  Poisson, so a short run scatters by a few per cent), and its p50/p95/p99 (counted from each
  request's scheduled start, so queueing is included) face 1/3/5 ms.
- A ``load`` JSON in the results folder adds the loader's bulk COPY rows/s against the
  validations/s target, as a second reading.
- issue 13, history independent of the partition count: the ``history`` script's TPS over the
  TPS of the same look-up run directly on the one partition holding the data, one alternating
  round of each in the same run (``acgs-db bench pgbench --script history
  --partition-baseline`` runs three), at least 0.85.

The ratio is measured / target: below 1 is good for a latency, 1 or more for a rate.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from acgs_db.bench.pgbench import RunOptions, ScriptName, run
from acgs_db.errors import ConfigurationError
from acgs_db.settings import Settings

RunKey = tuple[str, float | None]


@dataclass(frozen=True, slots=True)
class RunSpec:
    """A pgbench run the report needs."""

    script: ScriptName
    rate: float | None = None
    partition_baseline: bool = False
    """The script against the same look-up on the one partition holding the data."""

    @property
    def key(self) -> RunKey:
        if self.partition_baseline:
            return (BASELINE_KEY, self.rate)
        return (self.script.value, self.rate)

    @property
    def label(self) -> str:
        pace = f" -R {self.rate:g}" if self.rate is not None else ""
        baseline = " vs one partition" if self.partition_baseline else ""
        return f"{self.script.value}{pace}{baseline}"

    @property
    def file_name(self) -> str:
        """Name of its JSON in a results folder."""
        suffix = f"-r{self.rate:g}" if self.rate is not None else ""
        baseline = "-partition-baseline" if self.partition_baseline else ""
        return f"{self.script.value}{suffix}{baseline}.json"


BASELINE_KEY = "history-partition-baseline"
BASELINE_KIND = "pgbench-partition-baseline"
HISTORY = RunSpec(ScriptName.HISTORY)
HISTORY_BASELINE = RunSpec(ScriptName.HISTORY, partition_baseline=True)
MIXED = RunSpec(ScriptName.MIXED)
LOAD = RunSpec(ScriptName.MIXED, 150)
STRESS = RunSpec(ScriptName.MIXED, 300)
RUNS = (HISTORY, MIXED, LOAD, STRESS, HISTORY_BASELINE)


@dataclass(frozen=True, slots=True)
class Target:
    """One target figure of a seed document and the measurement that answers it."""

    seed: str
    name: str
    bound: float
    unit: str
    higher_is_better: bool
    run: RunSpec | None
    """The pgbench run it is read from; None for the loader's JSON."""
    metric: str
    """``p50``/``p95``/``p99``/``max`` (ms), ``tps``, ``ops`` (tps x statements), or
    ``rows_per_second`` (loader)."""
    tolerance: float = 0.0

    @property
    def text(self) -> str:
        sign = ">=" if self.higher_is_better else "<"
        unit = f" {self.unit}" if self.unit == "ms" else self.unit
        tol = f" -{self.tolerance:.0%}" if self.tolerance else ""
        return f"{sign} {self.bound:g}{unit}{tol}"


TARGETS = (
    Target("000", "query P99", 10, "ms", False, HISTORY, "p99"),
    Target("000", "operations/s", 2000, "/s", True, MIXED, "ops"),
    Target("000", "validations/s", 500, "/s", True, MIXED, "tps"),
    Target("000", "validations/s (COPY)", 500, "/s", True, None, "rows"),
    Target("001", "load rate", 150, "/s", True, LOAD, "tps", 0.05),
    Target("001", "load P50", 1, "ms", False, LOAD, "p50"),
    Target("001", "load P95", 3, "ms", False, LOAD, "p95"),
    Target("001", "load P99", 5, "ms", False, LOAD, "p99"),
    Target("001", "stress rate", 300, "/s", True, STRESS, "tps", 0.05),
    Target("001", "stress P50", 1, "ms", False, STRESS, "p50"),
    Target("001", "stress P95", 3, "ms", False, STRESS, "p95"),
    Target("001", "stress P99", 5, "ms", False, STRESS, "p99"),
    Target("013", "history / one partition", 0.85, "x", True, HISTORY_BASELINE, "ratio"),
)


@dataclass(frozen=True, slots=True)
class Row:
    """A target, the figure measured for it (None: not measured) and where it came from."""

    target: Target
    measured: float | None
    source: str

    @property
    def ratio(self) -> float | None:
        """measured / target."""
        return None if self.measured is None else self.measured / self.target.bound

    @property
    def passed(self) -> bool | None:
        if self.measured is None:
            return None
        t = self.target
        if t.higher_is_better:
            return self.measured >= t.bound * (1 - t.tolerance)
        return self.measured < t.bound

    def to_json(self) -> dict[str, Any]:
        ratio = self.ratio
        return {
            "seed": self.target.seed,
            "target": self.target.name,
            "bound": self.target.bound,
            "unit": self.target.unit,
            "higher_is_better": self.target.higher_is_better,
            "tolerance": self.target.tolerance,
            "measured": None if self.measured is None else round(self.measured, 3),
            "ratio": None if ratio is None else round(ratio, 3),
            "passed": self.passed,
            "source": self.source,
        }


def _measure(target: Target, result: Mapping[str, Any]) -> float | None:
    if target.metric == "rows":
        value = result.get("rows_per_second")
    elif target.metric == "ratio":
        value = result.get("tps_ratio")
    elif target.metric == "tps":
        value = result.get("tps")
    elif target.metric == "ops":
        value = float(result["tps"]) * int(result["statements_per_transaction"])
    else:
        latency = result.get("latency_ms") or {}
        value = latency.get(target.metric)
    return None if value is None else float(value)


def _describe(target: Target, result: Mapping[str, Any] | None) -> str:
    if result is None:
        what = "acgs-db load --json" if target.run is None else f"pgbench {target.run.label}"
        return f"not measured ({what})"
    if target.run is None:
        return f"acgs-db load, {result['rows']:,} rows"
    if result.get("kind") == BASELINE_KIND:
        median = result["median"]
        return (
            f"pgbench history {median['walk']['tps']:,.0f} TPS over {result['partitions']} "
            f"partitions vs {median['partition']['tps']:,.0f} TPS on {result['partition']}, "
            f"{result['rounds']} alternating round(s), {result['walk'][0]['clients']} clients, "
            f"{result['walk'][0]['duration_s']} s each"
        )
    return (
        f"pgbench {target.run.label}, {result['clients']} clients, {result['duration_s']} s, "
        f"{result['data']['table_rows']:,} rows"
    )


def evaluate(runs: Mapping[RunKey, Mapping[str, Any]], load: Mapping[str, Any] | None) -> list[Row]:
    """One row per target, from the pgbench results (by script and rate) and the load."""
    rows = []
    for target in TARGETS:
        result = load if target.run is None else runs.get(target.run.key)
        measured = None if result is None else _measure(target, result)
        rows.append(Row(target, measured, _describe(target, result)))
    return rows


def _key(result: Mapping[str, Any]) -> RunKey:
    rate = result.get("rate")
    return (str(result["script"]), None if rate is None else float(rate))


def read_results(folder: Path) -> tuple[dict[RunKey, dict[str, Any]], dict[str, Any] | None]:
    """The newest pgbench result per (script, rate) and the newest load in ``folder``'s JSON."""
    if not folder.is_dir():
        raise ConfigurationError(f"results folder {folder} does not exist")
    runs: dict[RunKey, dict[str, Any]] = {}
    load: dict[str, Any] | None = None
    load_mtime = -1.0
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"{path} is not readable JSON: {exc}") from None
        if not isinstance(data, dict):
            continue
        if data.get("kind") == "pgbench":
            key = _key(data)
            if key not in runs or data["started_at"] > runs[key]["started_at"]:
                runs[key] = data
        elif data.get("kind") == BASELINE_KIND:
            key = (BASELINE_KEY, None)
            started = data["walk"][0]["started_at"]
            if key not in runs or started > runs[key]["walk"][0]["started_at"]:
                runs[key] = data
        elif data.get("kind") == "load" and path.stat().st_mtime > load_mtime:
            load, load_mtime = data, path.stat().st_mtime
    return runs, load


def _labelled(
    on_tick: Callable[[float], None] | None,
) -> Callable[[str, float], None] | None:
    """A tick callback that ignores the round's label."""
    if on_tick is None:
        return None
    tick = on_tick
    return lambda _label, elapsed: tick(elapsed)


def run_all(
    url: str,
    *,
    settings: Settings,
    duration: int,
    clients: int,
    threads: int,
    specs: Iterable[RunSpec] = RUNS,
    on_start: Callable[[RunSpec], Callable[[float], None] | None] | None = None,
) -> dict[RunKey, dict[str, Any]]:
    """Run every pgbench run the targets need; ``on_start(spec)`` may return a tick callback."""
    results: dict[RunKey, dict[str, Any]] = {}
    for spec in specs:
        options = RunOptions(
            script=spec.script,
            clients=clients,
            threads=threads,
            duration=duration,
            rate=spec.rate,
        )
        on_tick = on_start(spec) if on_start is not None else None
        if spec.partition_baseline:
            from acgs_db.bench.partition_baseline import run_partition_baseline

            results[spec.key] = run_partition_baseline(
                url,
                options,
                settings=settings,
                rounds=1,
                on_tick=_labelled(on_tick),
            ).to_json()
            continue
        results[spec.key] = run(url, options, settings=settings, on_tick=on_tick).to_json()
    return results


def report_json(
    rows: list[Row], runs: Mapping[RunKey, Mapping[str, Any]], load: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The whole report as JSON: the rows, and the runs they were read from."""
    return {
        "kind": "report",
        "targets": [row.to_json() for row in rows],
        "passed": sum(row.passed is True for row in rows),
        "failed": sum(row.passed is False for row in rows),
        "not_measured": sum(row.passed is None for row in rows),
        "runs": list(runs.values()),
        "load": load,
    }
