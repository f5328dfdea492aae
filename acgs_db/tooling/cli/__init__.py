"""The ``acgs-db`` command line: one module per group of commands, all on one Typer app."""

from __future__ import annotations

from acgs_db.tooling.cli import (  # noqa: F401  (they register commands)
    bench,
    ledger,
    main_job,
    metrics,
    operations,
    tenants,
)
from acgs_db.tooling.cli._common import app


def main() -> None:
    app()


__all__ = ["app", "main"]
