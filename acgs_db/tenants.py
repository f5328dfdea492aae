"""Tenant logins: binding a login role to exactly one tenant (migration 0007).

Row-level security shows a member of the tenant group role the rows of the tenant its login is
bound to in the owner-only table ``tenant_logins``, whatever SQL it runs. Only the schema's
operator (a superuser, or a role that may grant the tenant role and write the owner's table)
binds and unbinds logins: ``acgs-db tenant-login grant|revoke|list``.

A login that row-level security lets see every tenant (a superuser, a BYPASSRLS role, or a member
of the owner, writer, reader or refresher role) is refused: its other policies would widen the
tenant's. Rebinding a bound login to another tenant is refused too (revoke first), so that a typo
never moves a login to another tenant's data.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import sql

from acgs_db.errors import AcgsDbError, reraised_as
from acgs_db.records import TENANT_ID_MAX, check_text
from acgs_db.resources import load_sql
from acgs_db.settings import Settings

_ROLE_NAME_MAX = 63


class TenantLoginError(AcgsDbError):
    """A tenant login could not be bound or unbound (the message says why)."""


@dataclass(frozen=True, slots=True)
class TenantLogin:
    """A login bound to a tenant, as ``acgs-db tenant-login list`` shows it."""

    login: str
    tenant_id: str
    bound_at: datetime
    present: bool
    """The role still exists under the name it was bound with."""
    can_login: bool
    member: bool
    """The role is a member of the tenant role (without it the binding grants nothing)."""


def _statement(name: str, settings: Settings, **identifiers: str) -> sql.Composed:
    """A statement of ``sql/tenants``, with the schema and the given role names as identifiers."""
    names = {key: sql.Identifier(value) for key, value in identifiers.items()}
    return sql.SQL(load_sql(f"tenants/{name}")).format(
        schema=sql.Identifier(settings.schema), **names
    )


def _roles(settings: Settings) -> Mapping[str, str]:
    return {
        "owner": settings.owner_role,
        "writer": settings.writer_role,
        "reader": settings.reader_role,
        "refresher": settings.refresher_role,
    }


def _check_login(login: str) -> str:
    if not isinstance(login, str) or not 0 < len(login) <= _ROLE_NAME_MAX or "\x00" in login:
        raise TenantLoginError(f"{login!r} is not a role name")
    return login


def grant(url: str, login: str, tenant_id: str, settings: Settings | None = None) -> bool:
    """Bind ``login`` to ``tenant_id`` and make it a member of the tenant role.

    Returns False when it was already bound to that tenant (nothing changed)."""
    settings = settings or Settings.from_env()
    _check_login(login)
    check_text("tenant_id", tenant_id, TENANT_ID_MAX)
    with _server_errors("binding"), psycopg.connect(url, autocommit=False) as conn:
        row = conn.execute(
            _statement("login_roles", settings), {**_roles(settings), "login": login}
        ).fetchone()
        if row is None:
            raise TenantLoginError(f"role {login!r} does not exist: CREATE ROLE it first")
        oid, can_login, bypasses, wider, bound_to = row
        if not can_login:
            raise TenantLoginError(f"role {login!r} cannot log in (it is not a LOGIN role)")
        if bypasses:
            raise TenantLoginError(
                f"role {login!r} is a superuser or has BYPASSRLS: row-level security would not "
                "apply to it"
            )
        if wider:
            raise TenantLoginError(
                f"role {login!r} is a member of {', '.join(wider)}, whose policies show every "
                "tenant: use a login that is in none of them"
            )
        if bound_to is not None and bound_to != tenant_id:
            raise TenantLoginError(
                f"role {login!r} is bound to tenant {bound_to!r}; revoke it first "
                f"(acgs-db tenant-login revoke {login})"
            )
        conn.execute(
            _statement("grant_membership", settings, tenant_role=settings.tenant_role, login=login)
        )
        conn.execute(
            _statement("bind", settings), {"oid": oid, "login": login, "tenant": tenant_id}
        )
        return bound_to is None


def revoke(url: str, login: str, settings: Settings | None = None) -> str | None:
    """Unbind ``login`` and take it out of the tenant role; return the tenant it was bound to
    (None when it was bound to none)."""
    settings = settings or Settings.from_env()
    _check_login(login)
    with _server_errors("unbinding"), psycopg.connect(url, autocommit=False) as conn:
        row = conn.execute(_statement("unbind", settings), {"login": login}).fetchone()
        exists = conn.execute(
            _statement("login_roles", settings), {**_roles(settings), "login": login}
        ).fetchone()
        if exists is not None:
            conn.execute(
                _statement(
                    "revoke_membership", settings, tenant_role=settings.tenant_role, login=login
                )
            )
        return None if row is None else str(row[0])


def bindings(url: str, settings: Settings | None = None) -> list[TenantLogin]:
    """Every login bound to a tenant."""
    settings = settings or Settings.from_env()
    with _server_errors("listing tenant logins"), psycopg.connect(url) as conn:
        rows = conn.execute(
            _statement("list", settings), {"tenant_role": settings.tenant_role}
        ).fetchall()
    return [TenantLogin(*row) for row in rows]


def _server_errors(action: str) -> contextlib.AbstractContextManager[None]:
    """Turn the server's errors into a one-line :class:`TenantLoginError`."""
    return reraised_as(TenantLoginError, action, psycopg.Error)
