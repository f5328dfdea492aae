"""``acgs-db tenant-login grant|revoke|list``: bind login roles to tenants (migration 0007)."""

from __future__ import annotations

from typing import Annotated

import typer

from acgs_db import tenants
from acgs_db.tooling.cli._common import app, plain_errors
from acgs_db.tooling.cli._common import settings as _settings
from acgs_db.tooling.devdb import database_url

tenant_login = typer.Typer(
    help="Bind login roles to tenants: row-level security then shows each only its tenant.",
    no_args_is_help=True,
)
app.add_typer(tenant_login, name="tenant-login")


@tenant_login.command("grant")
@plain_errors
def grant(
    login: Annotated[str, typer.Argument(help="An existing LOGIN role.")],
    tenant_id: Annotated[str, typer.Argument(help="The tenant it may see and write.")],
) -> None:
    """Make LOGIN a member of the tenant role, bound to TENANT_ID (and to no other tenant)."""
    settings = _settings()
    changed = tenants.grant(database_url(settings), login, tenant_id, settings)
    state = "bound" if changed else "already bound"
    typer.echo(f"{state}: login {login} to tenant {tenant_id}")


@tenant_login.command("revoke")
@plain_errors
def revoke(login: Annotated[str, typer.Argument(help="A bound login role.")]) -> None:
    """Unbind LOGIN and take it out of the tenant role: it sees nothing afterwards."""
    settings = _settings()
    tenant = tenants.revoke(database_url(settings), login, settings)
    if tenant is None:
        typer.echo(f"login {login} was bound to no tenant; it is not in the tenant role now")
    else:
        typer.echo(f"unbound: login {login} from tenant {tenant}")


@tenant_login.command("list")
@plain_errors
def list_() -> None:
    """Every bound login: tenant, since when, and whether the binding is in force."""
    settings = _settings()
    for b in tenants.bindings(database_url(settings), settings):
        problems = [
            text
            for ok, text in (
                (b.present, "role dropped or renamed"),
                (b.can_login, "cannot log in"),
                (b.member, f"not in {settings.tenant_role}"),
            )
            if not ok
        ]
        note = f" ({', '.join(problems)})" if problems else ""
        typer.echo(f"{b.login}\t{b.tenant_id}\t{b.bound_at:%Y-%m-%d %H:%M:%S%z}{note}")
