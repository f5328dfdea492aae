"""What every command module shares: the Typer app, consoles, error handling, settings."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from functools import wraps
from typing import Any, ParamSpec, TypeVar

import typer
from rich.console import Console

from acgs_db.errors import AcgsDbError
from acgs_db.settings import Settings

app = typer.Typer(
    help="acgs-db: the PostgreSQL audit store of the ACGS platform.", no_args_is_help=True
)
console = Console()
err = Console(stderr=True)

P = ParamSpec("P")
R = TypeVar("R")


def friendly_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn acgs-db's errors into one red line and exit status 1 instead of a traceback."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except AcgsDbError as exc:
            err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper


def run(coro: Coroutine[Any, Any, R]) -> R:
    """Run a coroutine to completion from a synchronous command."""
    return asyncio.run(coro)


def settings() -> Settings:
    return Settings.from_env()


def plain_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Like ``friendly_errors``, but the error is exactly one unwrapped line on stderr."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except AcgsDbError as exc:
            typer.echo(f"error: {one_line(exc)}", err=True)
            raise typer.Exit(1) from None

    return wrapper


def one_line(exc: BaseException) -> str:
    """An exception as one line: the first line of its message (with its type unless ours)."""
    lines = str(exc).strip().splitlines()
    kind = type(exc).__name__
    if not lines:
        return kind
    return lines[0] if isinstance(exc, AcgsDbError) else f"{kind}: {lines[0]}"
