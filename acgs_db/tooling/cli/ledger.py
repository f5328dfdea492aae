"""``acgs-db ledger seal|digest|verify``: the tamper-evident ledger (migration 0010)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from acgs_db import ledger
from acgs_db.tooling.cli._common import app, plain_errors
from acgs_db.tooling.cli._common import settings as _settings
from acgs_db.tooling.devdb import database_url

ledger_app = typer.Typer(
    help="Tamper-evident ledger: seal entries into chained blocks, print the digest, verify.",
    no_args_is_help=True,
)
app.add_typer(ledger_app, name="ledger")


@ledger_app.command("seal")
@plain_errors
def seal() -> None:
    """Seal the final ledger entries into a block chained to the previous one."""
    result = ledger.seal(database_url(_settings()))
    if result is None:
        typer.echo("nothing to seal: no entry is final yet")
    else:
        typer.echo(
            f"sealed block {result.block_id}: {result.entry_count} entries,"
            f" {result.row_count} rows, hash {result.block_hash}"
        )


@ledger_app.command("digest")
@plain_errors
def digest(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """The latest block's id and hash: keep it outside the database (a file, a ticket)."""
    d = ledger.latest_digest(database_url(_settings()))
    if d is None:
        typer.echo("no block sealed yet (run acgs-db ledger seal)", err=True)
        raise typer.Exit(1)
    typer.echo(d.to_json() if as_json else f"block {d.block_id} {d.block_hash}")


@ledger_app.command("verify")
@plain_errors
def verify(
    digest_source: Annotated[
        str | None,
        typer.Option("--digest", help="A digest kept outside: its JSON, or a file holding it."),
    ] = None,
    since: Annotated[
        int | None,
        typer.Option(help="A block verified before: check only what came after it."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The report as JSON.")] = False,
) -> None:
    """Recompute rows -> entries -> blocks -> chain; exit 0 only when everything matches.

    Otherwise exit 1, naming the first bad block and the rows (ids) that do not match: changed,
    missing, or present without a ledger entry.
    """
    expected = ledger.Digest.parse(digest_source) if digest_source else None
    report = ledger.verify(database_url(_settings()), expected, since)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), default=str))
    else:
        for line in report.lines():
            typer.echo(line)
    if not report.ok:
        raise typer.Exit(1)
