"""Load and benchmark commands: ``load`` and the ``bench`` group (``pgbench``, ``report``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from acgs_db.bench.pgbench import ScriptName
from acgs_db.bench.report import RUNS, Row, RunSpec
from acgs_db.errors import ConfigurationError
from acgs_db.settings import Settings
from acgs_db.tooling.cli._common import app, console, friendly_errors, run
from acgs_db.tooling.cli._common import settings as _settings
from acgs_db.tooling.devdb import DevCluster, StandbyCluster, database_url

if TYPE_CHECKING:
    from acgs_db.tooling.loader import LoadResult
    from acgs_db.tooling.synthetic import Workload

_T = TypeVar("_T")

bench = typer.Typer(
    help="Benchmarks: pgbench with the project's scripts, and the seed's targets.",
    no_args_is_help=True,
)
app.add_typer(bench, name="bench")

JsonOption = Annotated[
    Path | None, typer.Option("--json", help="Also write the figures to this JSON file.")
]


class RateColumn(ProgressColumn):
    """Rows per second, as rich estimates it over the last seconds."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        shown = f"{speed:,.0f} rows/s" if speed else "- rows/s"
        return Text(shown, style="progress.data.speed")


def _write_json(path: Path | None, data: dict[str, Any]) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        console.print(f"wrote {path}", highlight=False)


# -- load -----------------------------------------------------------------------------------

_PHASES = {
    "cache": "filling the decision cache",
    "vacuum": "VACUUM (ANALYZE) constitutional_validations",
    "analyze": "ANALYZE constitutional_validations",
    "refresh": "refreshing the 24-hour view",
}


@app.command("load")
@friendly_errors
def load_command(
    rows: Annotated[int, typer.Option(help="Validations to write.", min=1)] = 1_000_000,
    tenants: Annotated[int, typer.Option(help="Tenants (tenant-0000 ...).", min=1)] = 100,
    days: Annotated[float, typer.Option(help="Time span of the rows, ending now.")] = 30.0,
    decisions: Annotated[
        int, typer.Option(help="Decisions per tenant (each validated rows/(T*K) times).", min=1)
    ] = 1000,
    commit_every: Annotated[
        int, typer.Option(help="Rows per COPY transaction; 0 = the whole load in one.", min=0)
    ] = 200_000,
    cache: Annotated[
        bool, typer.Option(help="Fill the decision cache: one entry per tenant and decision.")
    ] = True,
    vacuum: Annotated[
        bool, typer.Option(help="VACUUM (ANALYZE) after the load; --no-vacuum: ANALYZE only.")
    ] = True,
    seed: Annotated[int, typer.Option(help="Random seed of the synthetic data.")] = 20261126,
    json_out: JsonOption = None,
) -> None:
    """Write realistic synthetic validations (binary COPY), fill the cache, ANALYZE, report rows/s.

    Run `acgs-db migrate` first. Rows are appended; ids are the loader's deterministic names,
    which the pgbench scripts rely on.
    """
    from acgs_db.tooling.loader import check_workload
    from acgs_db.tooling.synthetic import Workload

    workload = Workload(rows=rows, tenants=tenants, days=days, decisions=decisions, seed=seed)
    check_workload(workload, cache=cache)
    settings = _settings()
    url = database_url(settings)
    result = run(_load(url, settings, workload, commit_every or None, cache, vacuum))
    console.print(
        f"wrote {result.rows:,} validations ({tenants} tenants x {decisions} decisions, "
        f"{days:g} days) in {result.copy_seconds:.1f} s: "
        f"[bold]{result.rows_per_second:,.0f} rows/s[/bold]",
        highlight=False,
    )
    if cache:
        console.print(
            f"cached {result.cache_entries:,} decisions in {result.cache_seconds:.1f} s",
            highlight=False,
        )
    console.print(
        f"folded the load's {result.folded_deltas:,} rollup delta rows in "
        f"{result.fold_seconds:.1f} s",
        highlight=False,
    )
    step = "VACUUM (ANALYZE)" if vacuum else "ANALYZE"
    console.print(
        f"{step} in {result.analyze_seconds:.1f} s; 24-hour view refreshed in "
        f"{result.refresh_seconds:.1f} s",
        highlight=False,
    )
    _write_json(json_out, result.to_json())


async def _load(
    url: str,
    settings: Settings,
    workload: Workload,
    commit_every: int | None,
    cache: bool,
    vacuum: bool,
) -> LoadResult:
    from acgs_db.pool import create_pool
    from acgs_db.tooling.loader import load

    pool = await create_pool(url, settings=settings, min_size=1, max_size=2)
    try:
        with Progress(
            SpinnerColumn(),
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            RateColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
        ) as progress:
            task = progress.add_task("loading", total=workload.rows)

            def on_rows(n: int) -> None:
                progress.advance(task, n)

            def on_phase(name: str) -> None:
                if name in _PHASES:
                    progress.update(task, description=_PHASES[name])

            return await load(
                pool,
                workload,
                settings=settings,
                commit_every=commit_every,
                cache=cache,
                vacuum=vacuum,
                on_rows=on_rows,
                on_phase=on_phase,
            )
    finally:
        await pool.close()


# -- bench pgbench --------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _run_table(result: dict[str, Any]) -> Table:
    pace = f"--rate {result['rate']:g}" if result["rate"] is not None else "flat out"
    table = Table(
        title=(
            f"pgbench {result['script']}: {result['clients']} clients, {result['threads']} "
            f"threads, {result['duration_s']} s, {pace}"
        )
    )
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("transactions", f"{result['transactions']:,}")
    table.add_row("failures", str(result["failures"]))
    if result["skipped"]:
        table.add_row("skipped (--latency-limit)", str(result["skipped"]))
    table.add_row("TPS", f"{result['tps']:,.1f}")
    if result["statements_per_transaction"] > 1:
        ops = result["tps"] * result["statements_per_transaction"]
        table.add_row("statements/s", f"{ops:,.1f}")
    latency = result["latency_ms"] or {}
    for name in ("p50", "p95", "p99", "max"):
        table.add_row(f"latency {name} (ms)", _ms(latency.get(name)))
    if result["lag_ms"]:
        table.add_row("schedule lag p99 (ms)", _ms(result["lag_ms"]["p99"]))
    data = result["data"]
    table.add_row(
        "data",
        f"{data['table_rows']:,} rows, {data['tenants']} tenants x {data['decisions']} "
        f"decisions, {data['cache_entries']:,} cached",
    )
    table.add_row("server", str(result["server_version"]))
    machine = result["machine"]
    table.add_row("machine", f"{machine['cpus']} CPUs, load {machine['load_average_1m']}")
    return table


def _elapsed_progress() -> Progress:
    """A transient bar per timed run: what runs, how far, how long so far."""
    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def _timed_progress(description: str, duration: int) -> tuple[Progress, TaskID]:
    progress = _elapsed_progress()
    task = progress.add_task(description, total=duration)
    return progress, task


def _threads(asked: int | None, clients: int) -> int:
    """pgbench threads: as asked, else two, but never more than the clients (pgbench refuses)."""
    return asked if asked is not None else min(2, clients)


@bench.command("pgbench")
@friendly_errors
def pgbench_command(
    script: Annotated[
        ScriptName, typer.Option(help="Script of sql/pgbench to run.", case_sensitive=False)
    ] = ScriptName.HISTORY,
    clients: Annotated[int, typer.Option(help="Concurrent sessions (-c).", min=1)] = 8,
    threads: Annotated[
        int | None,
        typer.Option(help="pgbench worker threads (-j); default 2, at most --clients.", min=1),
    ] = None,
    duration: Annotated[int, typer.Option(help="Seconds to run (-T).", min=1)] = 20,
    rate: Annotated[
        float | None,
        typer.Option(help="Fixed rate in transactions/s (-R): 150 = load, 300 = stress."),
    ] = None,
    max_tries: Annotated[
        int, typer.Option(help="Tries of a transaction that hits a serialization error.", min=1)
    ] = 1,
    latency_limit: Annotated[
        float | None,
        typer.Option(help="ms; with --rate, skip transactions already this late (-L)."),
    ] = None,
    tenants: Annotated[
        int | None, typer.Option(help="Tenants to draw from (default: learnt from the ids).")
    ] = None,
    decisions: Annotated[
        int | None, typer.Option(help="Decisions per tenant (default: learnt from the ids).")
    ] = None,
    through_pgbouncer: Annotated[
        bool,
        typer.Option(
            "--through-pgbouncer",
            help="Run the script directly and through a PgBouncer (transaction pooling) of "
            "its own, three alternating rounds each, -M extended; print both and the ratio.",
        ),
    ] = False,
    partition_baseline: Annotated[
        bool,
        typer.Option(
            "--partition-baseline",
            help="With --script history: the look-up and the same query run directly on the "
            "partition holding the most rows, three alternating rounds each; print both and "
            "the ratio (issue 13's goal: at least 0.85).",
        ),
    ] = False,
    json_out: JsonOption = None,
) -> None:
    """Run pgbench (-M prepared) with a project script; print TPS, p50/p95/p99/max, failures.

    Scripts (sql/pgbench): history, decision, metrics and cache are the repository's look-ups,
    insert its single-row INSERT, mixed one validation request (cache look-up, history,
    insert, cache upsert). Ids are drawn from the loaded data (`acgs-db load`).
    """
    from acgs_db.bench.pgbench import RunOptions, prepare_run

    options = RunOptions(
        script=script,
        clients=clients,
        threads=_threads(threads, clients),
        duration=duration,
        rate=rate,
        max_tries=max_tries,
        latency_limit_ms=latency_limit,
    )
    options.check()
    settings = _settings()
    url = database_url(settings)
    if through_pgbouncer:
        _pgbouncer_hop(url, options, settings, tenants, decisions, json_out)
        return
    if partition_baseline:
        if script is not ScriptName.HISTORY:
            raise ConfigurationError("--partition-baseline compares the history script only")
        _partition_baseline(url, options, settings, tenants, decisions, json_out)
        return
    prepared = prepare_run(url, options, settings=settings, tenants=tenants, decisions=decisions)
    progress, task = _timed_progress(f"pgbench {script.value}", duration)
    with progress:
        result = prepared.execute(
            on_tick=lambda elapsed: progress.update(task, completed=min(elapsed, duration))
        ).to_json()
    console.print(_run_table(result))
    _write_json(json_out, result)


def _alternating(
    label: str, duration: float, run: Callable[[Callable[[str, float], None]], _T]
) -> _T:
    """``run(on_tick)`` under a progress bar of ``duration`` seconds: alternating rounds tell
    ``on_tick(round_label, elapsed)`` which side runs and for how long."""
    progress = _elapsed_progress()
    task = progress.add_task(label, total=duration)

    def on_tick(side: str, elapsed: float) -> None:
        progress.update(task, description=f"{label} {side}", completed=min(elapsed, duration))

    with progress:
        return run(on_tick)


def _partition_baseline(
    url: str,
    options: Any,
    settings: Settings,
    tenants: int | None,
    decisions: int | None,
    json_out: Path | None,
) -> None:
    """``bench pgbench --script history --partition-baseline``: alternating rounds of the
    look-up and of the same query on the one partition holding the data, and the ratio."""
    from acgs_db.bench.partition_baseline import run_partition_baseline

    baseline = _alternating(
        "pgbench history",
        options.duration,
        lambda on_tick: run_partition_baseline(
            url, options, settings=settings, tenants=tenants, decisions=decisions, on_tick=on_tick
        ),
    )
    result = baseline.to_json()
    table = Table(
        title=(
            f"pgbench history: {options.clients} clients, {options.threads} threads, "
            f"{options.duration} s per run; acgs_history() over {result['partitions']} "
            f"partitions and the same look-up on {result['partition']} "
            f"({result['partition_share_of_rows']:.1%} of the rows)"
        )
    )
    for name in ("round", "walk TPS", "one partition TPS", "ratio"):
        table.add_column(name, justify="left" if name == "round" else "right")
    for number, (walk, one, ratio) in enumerate(
        zip(result["walk"], result["one_partition"], result["round_ratios"], strict=True),
        start=1,
    ):
        table.add_row(str(number), f"{walk['tps']:,.1f}", f"{one['tps']:,.1f}", f"{ratio:.3f}")
    median = result["median"]
    table.add_row(
        "median",
        f"{median['walk']['tps']:,.1f}",
        f"{median['partition']['tps']:,.1f}",
        f"{result['tps_ratio']:.3f}",
    )
    console.print(table)
    console.print(
        f"history look-up / one partition: [bold]{result['tps_ratio']:.3f}[/bold] (goal >= 0.85)",
        highlight=False,
    )
    _write_json(json_out, result)


def _pgbouncer_hop(
    url: str,
    options: Any,
    settings: Settings,
    tenants: int | None,
    decisions: int | None,
    json_out: Path | None,
) -> None:
    """``bench pgbench --through-pgbouncer``: the same script directly and through PgBouncer,
    three alternating rounds each."""
    from acgs_db.bench.pooler_hop import run_hop

    hop = _alternating(
        f"pgbench {options.script.value}",
        options.duration,
        lambda on_tick: run_hop(
            url, options, settings=settings, tenants=tenants, decisions=decisions, on_tick=on_tick
        ),
    )
    result = hop.to_json()
    table = Table(
        title=(
            f"pgbench {options.script.value}: {options.clients} clients, {options.threads} "
            f"threads, {options.duration} s per run, -M extended; directly and through "
            f"{result['pgbouncer_version']} (transaction pooling)"
        )
    )
    for name in (
        "round",
        "direct TPS",
        "pgbouncer TPS",
        "direct p50/p99 ms",
        "pgbouncer p50/p99 ms",
    ):
        table.add_column(name, justify="left" if name == "round" else "right")

    def latency(run: dict[str, Any]) -> str:
        figures = run["latency_ms"] or {}
        return f"{_ms(figures.get('p50'))} / {_ms(figures.get('p99'))}"

    for number, (direct, pooled) in enumerate(
        zip(result["direct"], result["pgbouncer"], strict=True), start=1
    ):
        table.add_row(
            str(number),
            f"{direct['tps']:,.1f}",
            f"{pooled['tps']:,.1f}",
            latency(direct),
            latency(pooled),
        )
    median, ratio = result["median"], result["ratio"]
    table.add_row(
        "median",
        f"{median['direct']['tps']:,.1f}",
        f"{median['pgbouncer']['tps']:,.1f}",
        f"{_ms(median['direct']['p50'])} / {_ms(median['direct']['p99'])}",
        f"{_ms(median['pgbouncer']['p50'])} / {_ms(median['pgbouncer']['p99'])}",
    )
    console.print(table)
    console.print(
        f"PgBouncer over direct (medians): TPS ratio {ratio['tps']}, p50 ratio {ratio['p50']}, "
        f"p99 ratio {ratio['p99']}, fastest transaction ratio {ratio['min']}"
    )
    _write_json(json_out, result)


# -- bench report ---------------------------------------------------------------------------


def _figure(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "x":
        return f"{value:.3f}x"
    return f"{value:,.3f} ms" if unit == "ms" else f"{value:,.0f}{unit}"


def _report_table(rows: list[Row], runs: dict[Any, dict[str, Any]]) -> Table:
    caption = ""
    first = next((r for r in runs.values() if r.get("kind") == "pgbench"), None)
    if first is not None:
        data, machine = first["data"], first["machine"]
        caption = (
            f"{data['table_rows']:,} rows, {data['tenants']} tenants x {data['decisions']} "
            f"decisions; pgbench {first['clients']} clients, {first['threads']} threads, "
            f"{first['duration_s']} s per run; PostgreSQL {first['server_version'].split()[0]}, "
            f"{machine['cpus']} CPUs, load {machine['load_average_1m']}"
        )
    table = Table(title="acgs-db against the seed's targets", caption=caption)
    for name, justify in (
        ("seed", "left"),
        ("target", "left"),
        ("bound", "right"),
        ("measured", "right"),
        ("ratio", "right"),
        ("", "left"),
        ("run", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    verdict = {True: "[green]pass[/green]", False: "[red]FAIL[/red]", None: "[dim]n/a[/dim]"}
    for row in rows:
        t = row.target
        ratio = "-" if row.ratio is None else f"{row.ratio:.2f}x"
        run_label = "load" if t.run is None else t.run.label
        table.add_row(
            t.seed,
            t.name,
            t.text,
            _figure(row.measured, t.unit),
            ratio,
            verdict[row.passed],
            run_label,
        )
    return table


@bench.command("report")
@friendly_errors
def report_command(
    duration: Annotated[
        int, typer.Option(help="Seconds of each pgbench run (4 runs).", min=1)
    ] = 10,
    clients: Annotated[int, typer.Option(help="Concurrent sessions per run.", min=1)] = 8,
    threads: Annotated[
        int | None,
        typer.Option(help="pgbench threads per run; default 2, at most --clients.", min=1),
    ] = None,
    results: Annotated[
        Path | None,
        typer.Option(help="Folder of JSON results: written to after running; read with --no-run."),
    ] = None,
    run_benchmarks: Annotated[
        bool,
        typer.Option("--run/--no-run", help="Run the pgbench runs now, or only read --results."),
    ] = True,
    json_out: JsonOption = None,
) -> None:
    """The seed's targets beside the figures measured: pass/fail and measured/target ratio.

    By default it runs pgbench four times (history flat out, mixed flat out, mixed at 150
    and at 300 transactions/s) for --duration seconds each; with --no-run it reads the newest
    result of each from --results (files of `bench pgbench --json` and `load --json`).
    """
    from acgs_db.bench.report import evaluate, read_results, report_json, run_all

    load: dict[str, Any] | None = None
    runs: dict[Any, dict[str, Any]] = {}
    if results is not None and results.is_dir():
        runs, load = read_results(results)
    elif not run_benchmarks:
        raise ConfigurationError("--no-run needs --results FOLDER with JSON results to read")
    if run_benchmarks:
        settings = _settings()
        url = database_url(settings)
        progress = _elapsed_progress()

        def on_start(spec: RunSpec) -> Callable[[float], None]:
            task = progress.add_task(f"pgbench {spec.label}", total=duration)
            return lambda elapsed: progress.update(task, completed=min(elapsed, duration))

        with progress:
            fresh = run_all(
                url,
                settings=settings,
                duration=duration,
                clients=clients,
                threads=_threads(threads, clients),
                on_start=on_start,
            )
        runs.update(fresh)
        if results is not None:
            for spec in RUNS:
                if spec.key in fresh:
                    _write_json(results / spec.file_name, fresh[spec.key])
    rows = evaluate(runs, load)
    console.print(_report_table(rows, runs))
    summary = report_json(rows, runs, load)
    console.print(
        f"{summary['passed']} passed, {summary['failed']} failed, "
        f"{summary['not_measured']} not measured",
        highlight=False,
    )
    _write_json(json_out, summary)


# -- repository and refresh benchmarks ---------------------------------------------------------


def _flat(data: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows.extend(_flat(value, name + "."))
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for i, item in enumerate(value):
                rows.extend(_flat(item, f"{name}[{i}]."))
        else:
            if isinstance(value, bool) or not isinstance(value, int | float):
                shown = str(value)
            elif isinstance(value, float):
                shown = f"{value:,.3f}".rstrip("0").rstrip(".")
            else:
                shown = f"{value:,}"
            rows.append((name, shown))
    return rows


def _figures(title: str, data: dict[str, Any]) -> Table:
    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, value in _flat(data):
        table.add_row(name, value)
    return table


@bench.command("repository")
@friendly_errors
def repository_command(
    rows: Annotated[int, typer.Option(help="Records per COPY round.", min=1000)] = 1_000_000,
    rounds: Annotated[int, typer.Option(help="Alternating COPY rounds (median).", min=1)] = 3,
    memory_rows: Annotated[
        int, typer.Option(help="Records streamed from a generator for the RSS figure.")
    ] = 5_000_000,
    calls: Annotated[int, typer.Option(help="history() calls on one connection.")] = 20_000,
    seconds: Annotated[float, typer.Option(help="Seconds of each concurrent run.")] = 10.0,
    replicas: Annotated[
        bool,
        typer.Option(
            "--replicas",
            help="Also history() on the primary alone against the primary plus one standby:"
            " the first of ACGS_REPLICA_URLS, else standby 0 of the embedded cluster (started,"
            " or made, as by `dev-db start --replicas 1`).",
        ),
    ] = False,
    replicas_only: Annotated[
        bool, typer.Option("--replicas-only", help="Run the replica figures alone.")
    ] = False,
    json_path: JsonOption = None,
) -> None:
    """bulk_insert, history() and tenant_metrics() against raw asyncpg, pgbench and
    SQLAlchemy, in a scratch database on the configured server."""
    from acgs_db.bench import repository

    settings = _settings()
    options = repository.Options(
        rows=rows, rounds=rounds, memory_rows=memory_rows, calls=calls, seconds=seconds
    )
    url = database_url(settings)
    standby_url = None
    if replicas or replicas_only:
        if settings.replica_urls:
            standby_url = settings.replica_urls[0]
        elif settings.database_url:
            raise ConfigurationError(
                "--replicas needs ACGS_REPLICA_URLS (a standby of ACGS_DATABASE_URL's server),"
                " or neither variable set (then a standby of the embedded cluster is started)"
            )
        else:
            standby_url = StandbyCluster(DevCluster(settings.dev_root), 0).start()
    results = repository.run(
        url, options, settings, standby_url=standby_url, only_replicas=replicas_only
    )
    console.print(_figures("acgs-db bench repository", results))
    _write_json(json_path, results)


@bench.command("writer")
@friendly_errors
def writer_command(
    producers: Annotated[int, typer.Option(help="Concurrent producers.", min=1)] = 64,
    records: Annotated[int, typer.Option(help="Records written each way.", min=1)] = 200_000,
    rate: Annotated[
        float | None,
        typer.Option(help="Records per second on a fixed schedule (default: closed loop)."),
    ] = None,
    duration: Annotated[
        float, typer.Option(help="With --rate: seconds per run (caps --records).")
    ] = 30.0,
    connections: Annotated[
        list[int] | None, typer.Option(help="Writer connections (repeatable; default 1).")
    ] = None,
    max_delay: Annotated[
        list[float] | None, typer.Option(help="Writer linger in ms (repeatable; default 0).")
    ] = None,
    json_path: JsonOption = None,
) -> None:
    """audit_writer().write() against insert() from the same producers and one bulk_insert()
    of the same records: validations/s and acknowledgement latency, in a scratch database."""
    from acgs_db.bench import writer

    options = writer.Options(
        producers=producers,
        records=records,
        rate=rate,
        duration=duration,
        connections=tuple(connections or (1,)),
        max_delays=tuple(ms / 1000 for ms in (max_delay or (0.0,))),
    )
    results = writer.run(database_url(_settings()), options)
    console.print(_figures("acgs-db bench writer", results))
    _write_json(json_path, results)


@bench.command("refresh")
@friendly_errors
def refresh_command(
    scenario: Annotated[
        list[str] | None,
        typer.Option(help="capture, tenant, readers, old, load, window (default: all)."),
    ] = None,
    window: Annotated[
        list[int] | None,
        typer.Option(help="Rows in the last 24 hours (repeatable; default 5M and 20M)."),
    ] = None,
    window_alone: Annotated[
        int, typer.Option(help="old: rows in the window.", min=1000)
    ] = 1_000_000,
    old_rows: Annotated[
        int, typer.Option(help="old: older rows written into the same month.", min=1000)
    ] = 9_000_000,
    load_rows: Annotated[
        int, typer.Option(help="load: rows of `acgs-db load` (over --load-days).", min=1000)
    ] = 10_000_000,
    load_days: Annotated[float, typer.Option(help="load: days the rows span.", min=1)] = 30,
    json_path: JsonOption = None,
) -> None:
    """The 24-hour view: fold + refresh against a full recompute, exactness, readers during a
    refresh, real-time tenant figures and the capture trigger's cost, in scratch databases."""
    from acgs_db.bench import rollup

    options = rollup.Options(
        window_alone=window_alone, old_rows=old_rows, load_rows=load_rows, load_days=load_days
    )
    if window:
        options = replace(options, windows=tuple(window))
    every = ("capture", "tenant", "readers", "old", "load", "window")
    chosen = tuple(scenario) if scenario else every
    unknown = set(chosen) - set(every)
    if unknown:
        raise ConfigurationError(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    results = rollup.run(database_url(_settings()), options, chosen)
    console.print(_figures("acgs-db bench refresh", results))
    _write_json(json_path, results)


@bench.command("ledger")
@friendly_errors
def ledger_command(
    rows: Annotated[int, typer.Option(help="Records per COPY round.", min=1000)] = 200_000,
    rounds: Annotated[int, typer.Option(help="Alternating rounds (median).", min=1)] = 3,
    inserts: Annotated[int, typer.Option(help="insert() calls per round.", min=100)] = 2_000,
    chunks: Annotated[int, typer.Option(help="COPYs per interleaved round.", min=2)] = 10,
    writer_records: Annotated[
        int, typer.Option(help="Audit-writer records per round and side.", min=100)
    ] = 10_000,
    producers: Annotated[int, typer.Option(help="Audit-writer producers.", min=1)] = 32,
    json_path: JsonOption = None,
) -> None:
    """The ledger's cost: COPY, insert() and the audit writer with and without it, and the
    verify rate against a sequential scan of the same rows, in a scratch database on the
    configured server."""
    from acgs_db.bench import ledger as ledger_bench

    options = ledger_bench.Options(
        rows=rows,
        rounds=rounds,
        inserts=inserts,
        chunks=chunks,
        writer_records=writer_records,
        producers=producers,
    )
    results = ledger_bench.run(database_url(_settings()), options, _settings())
    console.print(_figures("acgs-db bench ledger", results))
    _write_json(json_path, results)


@bench.command("soak")
@friendly_errors
def soak_command(
    minutes: Annotated[float, typer.Option(help="How long (at most 60).")] = 2.0,
    rate: Annotated[float, typer.Option(help="Mixed transactions per second.")] = 150.0,
    refresh_interval: Annotated[float, typer.Option(help="Refresher interval (s).")] = 15.0,
    json_path: JsonOption = None,
) -> None:
    """The mixed workload at a fixed rate with the refresher running; fails (exit 1) on any
    error or when stored rows differ from acknowledged ones. Loopback servers only."""
    from acgs_db.bench.soak import SoakOptions, soak

    settings = _settings()
    options = SoakOptions(minutes=minutes, rate=rate, refresh_interval=refresh_interval)
    results = run(soak(database_url(settings), options, settings))
    console.print(_figures("acgs-db bench soak", results))
    _write_json(json_path, results)
    if not results["ok"]:
        raise typer.Exit(1)


@bench.command("metrics")
@friendly_errors
def metrics_command(
    rows: Annotated[int, typer.Option(help="Rows of the ranged tenant.")] = 1_000_000,
    days: Annotated[int, typer.Option(help="Days they span (the range read).")] = 30,
    tenant_rows: Annotated[int, typer.Option(help="Rows of the 24-hour tenant.")] = 50_000,
    calls: Annotated[int, typer.Option(help="Ranged calls timed.")] = 100,
    seed_calls: Annotated[int, typer.Option(help="Seed SQL calls timed (interleaved).")] = 10,
    json_path: JsonOption = None,
) -> None:
    """Exact figures over a range (tenant_metrics(since=...)) against the seed's SQL over the
    same rows, same run, with the ratio; and the real-time 24-hour figures of one tenant."""
    from acgs_db.bench import metrics

    options = metrics.Options(
        range_rows=rows,
        days=days,
        tenant_rows=tenant_rows,
        range_calls=calls,
        seed_calls=seed_calls,
    )
    results = metrics.run(database_url(_settings()), options)
    console.print(_figures("acgs-db bench metrics", results))
    _write_json(json_path, results)
