"""Commands of the development cluster, the schema and the main job (``demo``)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy.exc import DBAPIError

from acgs_db.settings import Settings
from acgs_db.tooling import schema
from acgs_db.tooling.cli._common import app, console, err, friendly_errors, run
from acgs_db.tooling.cli._common import settings as _settings
from acgs_db.tooling.devdb import (
    DevCluster,
    StandbyCluster,
    database_url,
    replication_streams,
    standbys,
    start_with_standbys,
    stop_with_standbys,
)
from acgs_db.urls import redact_url

dev_db = typer.Typer(
    help="The embedded development cluster (used when ACGS_DATABASE_URL is unset).",
    no_args_is_help=True,
)
app.add_typer(dev_db, name="dev-db")


# -- development cluster --------------------------------------------------------------------


@dev_db.command("start")
@friendly_errors
def dev_db_start(
    replicas: Annotated[
        int,
        typer.Option(
            min=0,
            help="Also start this many streaming standbys (pg_basebackup -R with a replication"
            " slot; made when missing): see `dev-db url --replica K`.",
        ),
    ] = 0,
) -> None:
    """Create (initdb) and start the cluster; print its URL."""
    url, replica_urls = start_with_standbys(DevCluster(_settings().dev_root), replicas)
    _print_url(url)
    for index, replica_url in enumerate(replica_urls):
        err.print(f"replica {index}: {replica_url}", highlight=False, markup=False, soft_wrap=True)


@dev_db.command("stop")
@friendly_errors
def dev_db_stop() -> None:
    """Stop the cluster and its standbys (their data stays)."""
    stop_with_standbys(DevCluster(_settings().dev_root))


@dev_db.command("status")
@friendly_errors
def dev_db_status() -> None:
    """Say whether the cluster and each standby exist and run, and how far each standby is
    behind (WAL bytes still to replay, replay delay in seconds)."""
    primary = DevCluster(_settings().dev_root)
    status = primary.status()
    state = "running" if status.running else ("stopped" if status.initialized else "absent")
    _print_url(f"{state} {status.data_dir} {status.url or ''}".rstrip())
    streams = replication_streams(primary)
    for standby in standbys(primary):
        replica = standby.replica_status(streams)
        if replica.behind_bytes is None:
            lag = "lag unknown (not streaming)"
        else:
            seconds = "?" if replica.lag_seconds is None else f"{replica.lag_seconds:.3f}"
            lag = f"lag {replica.behind_bytes} bytes {seconds} s"
        line = f"replica {replica.index} {'running' if replica.running else 'stopped'}"
        _print_url(f"{line} {replica.data_dir} {replica.url or '-'} {lag}")


@dev_db.command("url")
@friendly_errors
def dev_db_url(
    replica: Annotated[
        int | None,
        typer.Option(min=0, help="Print standby K's URL instead (started, or made, if needed)."),
    ] = None,
) -> None:
    """Print the cluster's URL, starting it if needed (it holds no password: it names the
    cluster's password file, so ``psql "$(acgs-db dev-db url)"`` connects)."""
    primary = DevCluster(_settings().dev_root)
    url = primary.start()
    _print_url(url if replica is None else StandbyCluster(primary, replica).start())


def _print_url(line: str) -> None:
    """One unwrapped line, as is (no markup, no highlighting): fit for ``$(...)``."""
    console.print(line, highlight=False, markup=False, soft_wrap=True)


# -- schema ---------------------------------------------------------------------------------


@app.command()
@friendly_errors
def migrate(revision: Annotated[str, typer.Option(help="Target revision.")] = "head") -> None:
    """Apply the Alembic migrations (same as ``alembic upgrade head``)."""
    schema.upgrade(database_url(_settings()), revision)


@app.command()
@friendly_errors
def downgrade(
    revision: Annotated[
        str,
        typer.Option(help="Target revision (required): a revision id, -1, or base (all)."),
    ],
    yes: Annotated[
        bool, typer.Option("--yes", help="Drop tables that hold rows (their data is lost).")
    ] = False,
) -> None:
    """Revert the Alembic migrations down to --revision.

    Refused, dropping nothing, when a table the downgrade would drop holds rows, unless --yes."""
    url = database_url(_settings())
    plan = schema.downgrade_plan(url, revision)
    if plan.tables_with_rows and not yes:
        tables = ", ".join(rows.describe() for rows in plan.tables_with_rows)
        err.print(
            f"[red]error:[/red] downgrade to {revision} would drop tables that hold rows: "
            f"{tables}; nothing was dropped (pass --yes to drop them)",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1)
    try:
        schema.downgrade(url, revision)
    except DBAPIError as exc:  # a migration refused (e.g. batches still prepared): one line
        diag = getattr(exc.orig, "diag", None)
        message = getattr(diag, "message_primary", None) or str(exc.orig).splitlines()[0]
        hint = getattr(diag, "message_hint", None)
        err.print(
            f"[red]error:[/red] downgrade to {revision} failed: {message}"
            + (f" (hint: {hint})" if hint else ""),
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1) from None
    undone = ", ".join(plan.revisions) or "nothing"
    console.print(f"downgraded to {revision} (undone: {undone})", highlight=False)


# -- the main job ---------------------------------------------------------------------------


@app.command()
@friendly_errors
def demo(
    rows: Annotated[int, typer.Option(help="Sample validations to write.")] = 20_000,
    tenants: Annotated[int, typer.Option(help="Tenants in the sample.")] = 10,
) -> None:
    """Migrate, load a small sample, refresh the 24-hour view and print a tenant's metrics."""
    settings = _settings()
    url = database_url(settings)
    _print_url(f"database: {redact_url(url)}")
    schema.upgrade(url)
    run(_demo(url, settings, rows, tenants))


async def _demo(url: str, settings: Settings, rows: int, tenants: int) -> None:
    from acgs_db.pool import create_pool
    from acgs_db.refresher import MetricsRefresher
    from acgs_db.repository import ValidationRepository
    from acgs_db.tooling.synthetic import Workload, decision_name, generate, tenant_name

    pool = await create_pool(url, settings=settings, min_size=1, max_size=4)
    try:
        repo = ValidationRepository(pool, settings)
        workload = Workload(rows=rows, tenants=tenants, days=2, decisions=50)
        written = await repo.bulk_insert(generate(workload))
        console.print(f"wrote {written} validations for {tenants} tenants over 2 days")
        result = await MetricsRefresher(pool, settings=settings).refresh_once()
        console.print(f"refreshed the 24-hour view in {result.duration_s * 1000:.1f} ms")
        tenant = tenant_name(1)
        metrics = await repo.tenant_metrics(tenant)
        if metrics is None:
            console.print(f"{tenant} has no validation in the last 24 hours")
            return
        table = Table(title=f"{tenant}: last 24 hours, from the {metrics.source}")
        table.add_column("metric")
        table.add_column("value", justify="right")
        for name in (
            "total_validations",
            "avg_compliance_score",
            "failed_validations",
            "constitutional_violations",
            "avg_processing_time_ms",
            "p95_processing_time_ms",
            "p99_processing_time_ms",
        ):
            table.add_row(name, _fmt(getattr(metrics, name)))
        console.print(table)
        history = await repo.history(tenant, decision_name(1, 7), limit=3)
        console.print(f"latest validations of {decision_name(1, 7)}:")
        for entry in history:
            console.print(
                f"  {entry.created_at:%Y-%m-%d %H:%M:%S}  score {entry.compliance_score}"
                f"  {entry.processing_time_ms} ms",
                highlight=False,
            )
    finally:
        await pool.close()


def _fmt(value: float | Decimal | None) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    if value is None:
        return "-"
    return str(round(value, 4)) if not isinstance(value, int) else str(value)
