"""Showing database URLs without their secrets."""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

REDACTED = "***"
_URL_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg", "postgresql+asyncpg")


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, fit to print or log.

    Handles libpq URLs (a password in the user part or a ``password=`` query parameter) and
    key/value connection strings (``host=… password=…``). A string that parses as neither is
    shown as ``***`` whole rather than risk printing a secret.
    """
    parts = urlsplit(url)
    if parts.scheme in _URL_SCHEMES:
        netloc = parts.netloc
        userinfo, at, hostport = netloc.rpartition("@")
        if at and ":" in userinfo:
            netloc = f"{userinfo.partition(':')[0]}:{REDACTED}@{hostport}"
        query = parts.query
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(key == "password" for key, _ in pairs):
            redacted = [(k, REDACTED if k == "password" else v) for k, v in pairs]
            query = urlencode(redacted, safe="/*")
        return urlunsplit(parts._replace(netloc=netloc, query=query))
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return REDACTED
    if "password" in params:
        params["password"] = REDACTED
    return make_conninfo(**{k: str(v) for k, v in params.items()})


def password_of(url: str) -> str | None:
    """The password a libpq URL logs in with: in its user part, its ``password`` parameter, or
    the line of its ``passfile`` that matches its host, port, database and user (libpq's
    ``.pgpass`` rules: ``*`` matches anything, ``\\`` escapes ``:`` and ``\\``). None when it has
    none. For tools that must be handed the password itself (PgBouncer's userlist)."""
    parts = urlsplit(url)
    if parts.password is not None:
        return unquote(parts.password)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    if "password" in query:
        return query["password"]
    passfile = query.get("passfile")
    if not passfile:
        return None
    wanted = (
        parts.hostname or "localhost",
        str(parts.port or 5432),
        unquote(parts.path.lstrip("/")) or unquote(parts.username or ""),
        unquote(parts.username or ""),
    )
    with open(passfile, encoding="utf-8") as handle:
        for line in handle:
            fields = _pgpass_fields(line.rstrip("\n"))
            if len(fields) == 5 and all(
                have in ("*", want) for have, want in zip(fields[:4], wanted, strict=True)
            ):
                return fields[4]
    return None


def _pgpass_fields(line: str) -> list[str]:
    fields: list[str] = []
    current: list[str] = []
    escaped = False
    for char in line:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ":" and len(fields) < 4:
            fields.append("".join(current))
            current = []
        else:
            current.append(char)
    fields.append("".join(current))
    return fields
