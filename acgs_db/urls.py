"""Showing database URLs without their secrets."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

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
