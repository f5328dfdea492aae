"""``acgs-db metrics TENANT``: a tenant's figures over the last 24 hours or over any range.

Plain text (one ``name: value`` line per figure) or ``--json``; the range is ``--since`` (a
duration back from now such as ``7d``, ``12h``, ``30m``, or an ISO-8601 time with its offset)
and ``--until`` (ISO-8601, default now). Without ``--since`` it is the 24-hour figures the
dashboards read.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer

from acgs_db.errors import AcgsDbError
from acgs_db.tooling.cli._common import app, run
from acgs_db.tooling.cli._common import plain_errors as _plain_errors
from acgs_db.tooling.cli._common import settings as _settings
from acgs_db.tooling.devdb import database_url

if TYPE_CHECKING:
    from acgs_db.records import TenantMetrics
    from acgs_db.settings import Settings

_DURATION = re.compile(r"^(\d{1,6})([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, now: datetime) -> datetime:
    """``7d``/``12h``/``30m``/``45s``/``2w`` back from ``now``, or an aware ISO-8601 time."""
    match = _DURATION.match(text.strip())
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    return parse_time("--since", text)


def parse_time(option: str, text: str) -> datetime:
    """An ISO-8601 time with its UTC offset (``Z`` accepted); a naive time is refused."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise AcgsDbError(
            f"{option} must be a duration (7d, 12h, 30m) or an ISO-8601 time, got {text!r}"
        ) from None
    if value.tzinfo is None:
        raise AcgsDbError(f"{option} must carry a UTC offset (e.g. {text}Z), got {text!r}")
    return value


@app.command()
@_plain_errors
def metrics(
    tenant: Annotated[str, typer.Argument(help="The tenant's id.")],
    since: Annotated[
        str | None,
        typer.Option(help="Start of the range: a duration back from now (7d, 12h) or ISO-8601."),
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="End of the range (exclusive), ISO-8601; default now.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """A tenant's figures (counts, averages, exact p95/p99, violations) over a range.

    Exactly the seed's aggregate SQL over ``[since, until)``. Without ``--since``: the last
    24 hours, from the view when fresh. Exit 1 with one line on stderr on bad input.
    """
    now = datetime.now(UTC)
    low = parse_since(since, now) if since is not None else None
    high = parse_time("--until", until) if until is not None else None
    if high is not None and low is None:
        raise AcgsDbError("--until needs --since")
    if low is not None and high is None:
        high = now
    found = run(_read(_settings(), tenant, low, high))
    if found is None:
        typer.echo(json.dumps(None) if as_json else f"no validations of {tenant} in the range")
        return
    figures = _figures(found, low, high)
    if as_json:
        typer.echo(json.dumps(figures))
    else:
        for name, value in figures.items():
            typer.echo(f"{name}: {value}")


def _figures(found: TenantMetrics, low: datetime | None, high: datetime | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in asdict(found).items():
        if isinstance(value, datetime):
            out[name] = value.isoformat()
        elif value is None or isinstance(value, int | float | str):
            out[name] = value
        else:  # Decimal: kept exact as a string
            out[name] = str(value)
    out["since"] = low.isoformat() if low is not None else None
    out["until"] = high.isoformat() if high is not None else None
    return out


async def _read(
    settings: Settings, tenant: str, low: datetime | None, high: datetime | None
) -> TenantMetrics | None:
    from acgs_db.pool import create_pool
    from acgs_db.repository import ValidationRepository

    url = await asyncio.to_thread(database_url, settings)
    pool = await create_pool(url, settings=settings, min_size=1, max_size=1)
    try:
        return await ValidationRepository(pool, settings).tenant_metrics(tenant, low, high)
    finally:
        await pool.close()
