"""A PgBouncer of our own in front of one PostgreSQL server (tests and ``bench pgbench``).

Debian's ``pgbouncer`` package (1.18 on Debian 12) is run in the foreground on a free loopback
port, from an ini file and a userlist written into a private temporary folder; every
database name is forwarded to the same name on the server (``* = host=... port=...``).
PgBouncer refuses to run as root, so under root it drops to Debian's ``postgres`` account
(``-u``), as the embedded cluster does.

Authentication is decided in one place, :func:`auth_config`: trust while the server trusts
its loopback clients, and SCRAM with the plain-text password in the userlist once the server
asks for passwords.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

from acgs_db.errors import ConfigurationError
from acgs_db.tooling.devdb import RUN_AS, free_port
from acgs_db.urls import password_of

POOL_MODES = ("session", "transaction")
_START_TIMEOUT_S = 15.0


def find_pgbouncer() -> Path:
    """The ``pgbouncer`` binary: ``PATH``, then Debian's ``/usr/sbin``."""
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")
    if found is None:
        raise ConfigurationError(
            "pgbouncer was not found on PATH or in /usr/sbin; install it: apt-get install pgbouncer"
        )
    return Path(found)


def _quoted(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def auth_config(logins: Mapping[str, str | None]) -> tuple[dict[str, str], str]:
    """PgBouncer's authentication settings and userlist for these logins (name -> password).

    No passwords (the server trusts loopback clients): ``auth_type = trust``, and each login
    is still listed (PgBouncer refuses names missing from the userlist). With passwords (a
    server using scram-sha-256): the plain text goes into the userlist and ``auth_type =
    scram-sha-256``; PgBouncer checks the client's SCRAM exchange against it and logs in to the
    server with SCRAM itself, which a stored SCRAM secret would not let it do.
    """
    if not logins:
        raise ValueError("PgBouncer needs at least one login")
    with_password = [name for name, password in logins.items() if password is not None]
    if with_password and len(with_password) != len(logins):
        missing = sorted(set(logins) - set(with_password))
        raise ValueError(f"logins without a password under scram-sha-256: {missing}")
    auth_type = "scram-sha-256" if with_password else "trust"
    userlist = "".join(
        f"{_quoted(name)} {_quoted(password or '')}\n" for name, password in logins.items()
    )
    return {"auth_type": auth_type}, userlist


class PgBouncer:
    """A PgBouncer process in front of the server of ``server_url`` (``with`` starts and stops
    it). ``url_for(url)`` is a URL of the same login and database through it."""

    def __init__(
        self,
        server_url: str,
        *,
        logins: Mapping[str, str | None] | None = None,
        pool_mode: str = "transaction",
        pool_size: int = 20,
        query_wait_timeout: int = 120,
        schema: str | None = None,
        ignore_startup_parameters: Sequence[str] = (),
    ) -> None:
        if pool_mode not in POOL_MODES:
            raise ValueError(f"pool_mode must be one of {POOL_MODES}, got {pool_mode!r}")
        parts = urlsplit(server_url)
        if parts.hostname is None or parts.port is None:
            raise ConfigurationError("the server URL must name a host and a port")
        self._server = parts
        user = parts.username or "postgres"
        self.logins = dict(logins) if logins is not None else {user: password_of(server_url)}
        self.pool_mode = pool_mode
        self.pool_size = pool_size
        self.query_wait_timeout = query_wait_timeout
        self.schema = schema
        self.ignore_startup_parameters = tuple(ignore_startup_parameters)
        self.port = 0
        self.folder: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def ini(self, userlist: Path) -> str:
        """The configuration file's text."""
        auth, _ = auth_config(self.logins)
        target = f"host={self._server.hostname} port={self._server.port}"
        if self.schema is not None:  # PgBouncer forwards no search_path: set it per connection
            target += f" connect_query='SET search_path = {_quoted(self.schema)}'"
        settings = {
            "listen_addr": "127.0.0.1",
            "listen_port": str(self.port),
            "unix_socket_dir": "",
            **auth,
            "auth_file": str(userlist),
            "pool_mode": self.pool_mode,
            "default_pool_size": str(self.pool_size),
            "max_client_conn": "2000",
            "query_wait_timeout": str(self.query_wait_timeout),
            "ignore_startup_parameters": ",".join(self.ignore_startup_parameters),
        }
        lines = ["[databases]", f"* = {target}", "[pgbouncer]"]
        lines += [f"{key} = {value}" for key, value in settings.items()]
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        """Write the files, start PgBouncer and wait until it accepts connections."""
        program = find_pgbouncer()
        self.folder = Path(tempfile.mkdtemp(prefix="acgs-pgbouncer-"))
        self.port = free_port()
        _, users = auth_config(self.logins)
        userlist = self.folder / "userlist.txt"
        userlist.write_text(users)
        userlist.chmod(0o600)
        (self.folder / "pgbouncer.ini").write_text(self.ini(userlist))
        command = [str(program)]
        if os.geteuid() == 0:  # "PgBouncer should not run as root"
            account = pwd.getpwnam(RUN_AS)
            for path in (self.folder, *self.folder.iterdir()):
                os.chown(path, account.pw_uid, account.pw_gid)
            command += ["-u", RUN_AS]
        command.append(str(self.folder / "pgbouncer.ini"))
        with (self.folder / "pgbouncer.log").open("wb") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise ConfigurationError(f"pgbouncer exited at start: {self.log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise ConfigurationError(f"pgbouncer did not listen within {_START_TIMEOUT_S:.0f} s")

    def log_text(self) -> str:
        """What PgBouncer logged so far (connections, logins, errors)."""
        if self.folder is None or not (self.folder / "pgbouncer.log").exists():
            return ""
        return (self.folder / "pgbouncer.log").read_text(errors="replace")

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def stop(self) -> None:
        """Stop PgBouncer (closing every client and server connection) and remove its folder."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def url_for(self, url: str) -> str:
        """``url`` (same login, password and database) pointed at this PgBouncer."""
        parts = urlsplit(url)
        credentials = parts.netloc.rpartition("@")[0]
        netloc = f"{credentials}@127.0.0.1:{self.port}" if credentials else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def __enter__(self) -> PgBouncer:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
