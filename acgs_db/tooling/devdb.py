"""The embedded development database: a private PostgreSQL cluster the toolkit starts itself.

When ``ACGS_DATABASE_URL`` is unset, commands that need a database use this cluster:
``initdb`` into ``.acgs/pgdata`` (gitignored), a free loopback port, pg_partman available
and pg_cron preloaded. PostgreSQL refuses to run as root, so under root the cluster runs
as the unprivileged ``postgres`` account that Debian's package creates.

Any local user may connect to a loopback port, so the cluster is not left open: every
connection authenticates with SCRAM-SHA-256 as ``postgres``, whose generated password lives
in a libpq password file (``.acgs/pgpass``, mode 0600, owned by the invoking user). The URLs
name that file (``?passfile=``) instead of holding the password, so printing them is safe.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from acgs_db.errors import ConfigurationError
from acgs_db.resources import load_sql
from acgs_db.settings import Settings

DEBIAN_PACKAGES = "postgresql-15 postgresql-15-partman postgresql-15-cron"
DATABASE = "acgs"
SUPERUSER = "postgres"
RUN_AS = "postgres"
_REQUIRED_BINARIES = ("initdb", "pg_ctl", "postgres")
_REQUIRED_EXTENSIONS = {"pg_partman": "partman", "pg_cron": "cron"}
HOST = "127.0.0.1"
PASSFILE = "pgpass"
"""The libpq password file of the cluster, in its folder."""
POINTER = "cluster-dir"
"""Under root, in the project's folder: the path of the fallback folder in /var/tmp."""
FALLBACK_BASE = Path("/var/tmp")

# The whole of pg_hba.conf: TCP on the loopback only (the server opens no unix socket), a
# password for everyone; the replication line is for standbys started later.
HBA_CONF = f"""# acgs-db development cluster: loopback TCP only, SCRAM passwords for every role
host    all          all  {HOST}/32  scram-sha-256
host    replication  all  {HOST}/32  scram-sha-256
"""

# Written into postgresql.conf at initdb. Tuned for a 2-core, 24 GiB development machine;
# work_mem stays at PostgreSQL's default so that the figures resemble a stock server.
SERVER_CONFIG = {
    "listen_addresses": f"'{HOST}'",
    "unix_socket_directories": "''",
    "password_encryption": "'scram-sha-256'",
    "max_connections": "200",
    "shared_buffers": "'1GB'",
    "effective_cache_size": "'8GB'",
    "maintenance_work_mem": "'256MB'",
    "random_page_cost": "1.1",
    "max_wal_size": "'8GB'",
    "checkpoint_timeout": "'15min'",
    "max_prepared_transactions": "32",
    "max_worker_processes": "16",
    "shared_preload_libraries": "'pg_cron'",
    "cron.database_name": "'postgres'",
    "cron.use_background_workers": "on",
    "max_locks_per_transaction": "256",
    "log_min_messages": "warning",
    "log_min_error_statement": "panic",
    "log_line_prefix": "'%m [%p] %q%u@%d '",
}


def _version_key(path: Path) -> tuple[int, ...]:
    try:
        return (int(path.parent.name),)
    except ValueError:
        return (0,)


def find_bindir(debian_root: Path = Path("/usr/lib/postgresql")) -> Path:
    """Locate PostgreSQL's server binaries: ``pg_config``, then ``PATH``, then Debian's folders."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            out = subprocess.run(
                [pg_config, "--bindir"], check=True, capture_output=True, text=True
            ).stdout.strip()
            candidates.append(Path(out))
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).parent)
    candidates.extend(sorted(debian_root.glob("*/bin"), key=_version_key, reverse=True))
    for bindir in candidates:
        if all((bindir / name).exists() for name in _REQUIRED_BINARIES):
            return bindir
    raise ConfigurationError(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found through pg_config, "
        f"PATH or /usr/lib/postgresql/*/bin; install them: apt-get install {DEBIAN_PACKAGES}"
    )


def check_extensions(bindir: Path) -> None:
    """Fail with the package names when pg_partman or pg_cron is not installed for this server."""
    sharedir = _sharedir(bindir)
    missing = [
        name
        for name in _REQUIRED_EXTENSIONS
        if not (sharedir / "extension" / f"{name}.control").exists()
    ]
    if missing:
        version = bindir.parent.name if bindir.parent.name.isdigit() else "15"
        packages = " ".join(f"postgresql-{version}-{_REQUIRED_EXTENSIONS[m]}" for m in missing)
        raise ConfigurationError(
            f"PostgreSQL extension(s) {', '.join(missing)} not installed for {bindir}; "
            f"install them: apt-get install {packages}"
        )


def _sharedir(bindir: Path) -> Path:
    pg_config = bindir / "pg_config"
    if pg_config.exists():
        out = subprocess.run(
            [str(pg_config), "--sharedir"], check=True, capture_output=True, text=True
        ).stdout.strip()
        return Path(out)
    return Path("/usr/share/postgresql") / bindir.parent.name


def free_port() -> int:
    """Ask the kernel for a free TCP port on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _traversable(path: Path, uid: int, gids: set[int]) -> bool:
    """True when the account (uid, gids) may enter every folder above ``path``."""
    for parent in [path, *path.parents]:
        if not parent.exists():
            continue
        st = parent.stat()
        if st.st_uid == uid:
            bit = stat.S_IXUSR
        elif st.st_gid in gids:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


def _is_zombie(pid: int) -> bool:
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat_line.rpartition(")")[2].split()[:1] == ["Z"]


def pgpass_line(user: str, password: str, host: str = HOST) -> str:
    """One line of a libpq password file: any port and database of ``host`` for ``user``
    (``:`` and ``\\`` escaped with a backslash, as libpq reads them)."""

    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace(":", "\\:")

    return f"{escape(host)}:*:*:{escape(user)}:{escape(password)}\n"


def _write_new_file(path: Path, text: str, owner: pwd.struct_passwd | None = None) -> None:
    """Create ``path`` (mode 0600, never an existing file or a symlink) holding ``text``,
    owned by ``owner`` when given (root handing a file to ``postgres``)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as handle:
        if owner is not None:
            os.fchown(handle.fileno(), owner.pw_uid, owner.pw_gid)
        handle.write(text)


def _write_existing_file(path: Path, text: str, *, append: bool) -> None:
    """Write into a file of the data folder without following a symlink planted there (under
    root the folder belongs to ``postgres``, and root must not be tricked into writing
    elsewhere)."""
    flags = os.O_WRONLY | os.O_NOFOLLOW | (os.O_APPEND if append else os.O_TRUNC)
    with os.fdopen(os.open(path, flags), "w") as handle:
        handle.write(text)


@contextlib.contextmanager
def _flock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if needed, never through a symlink)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def check_private_dir(path: Path, owner: int) -> None:
    """Raise unless ``path`` is a real folder (not a symlink) owned by uid ``owner`` that
    nobody else may write to: the checks a reused folder in world-writable /var/tmp needs."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_DIRECTORY)
    except OSError as exc:
        raise ConfigurationError(
            f"{path} is not a plain folder (a symlink or another kind of file): {exc.strerror};"
            " refusing to use it for the development cluster"
        ) from None
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    if st.st_uid != owner or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigurationError(
            f"{path} belongs to uid {st.st_uid} with mode {stat.filemode(st.st_mode)}; the"
            f" development cluster's folder must belong to uid {owner} and be writable by it"
            " alone: refusing to use it"
        )


def _read_pointer(pointer: Path, owner: int) -> Path | None:
    """The folder a pointer file names; ``None`` when there is no pointer file. The pointer
    must be a plain file (no symlink followed) of ``owner`` that nobody else may write to."""
    try:
        fd = os.open(pointer, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # no FIFO wait
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigurationError(f"cannot read {pointer}: {exc.strerror}") from None
    with os.fdopen(fd) as handle:
        st = os.fstat(handle.fileno())
        if (
            not stat.S_ISREG(st.st_mode)
            or st.st_uid != owner
            or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        ):
            raise ConfigurationError(
                f"{pointer} is not a plain file of uid {owner} writable by it alone;"
                " remove it to let acgs-db create a new development cluster"
            )
        text = handle.read().strip()
    return Path(text)


def fallback_root(project_root: Path, base: Path = FALLBACK_BASE) -> Path:
    """The cluster folder to use when ``postgres`` cannot enter ``project_root`` (under root).

    A folder of a random name made exclusively in ``base`` (``mkdtemp``: nobody can have
    planted it), remembered in ``project_root/cluster-dir``. When reused it must still be a
    real folder (no symlink) of the invoking user (root) that nobody else may write to: /var/tmp
    is world-writable, and a folder cleaned away (reboot, tmpreaper) could be re-created by
    another user under the same name. A missing folder is replaced by a new one.
    """
    project_root.mkdir(parents=True, exist_ok=True)
    with _flock(project_root / "lock"):  # two first runs must not make two folders
        return _fallback_root(project_root, base)


def _fallback_root(project_root: Path, base: Path) -> Path:
    owner = os.geteuid()
    pointer = project_root / POINTER
    folder = _read_pointer(pointer, owner)
    if folder is not None:
        if (
            not folder.is_absolute()
            or folder.parent != base
            or not folder.name.startswith("acgs-db-")
        ):
            raise ConfigurationError(
                f"{pointer} names {folder}, not a folder acgs-db-* of {base}; remove {pointer}"
            )
        if os.path.lexists(folder):
            check_private_dir(folder, owner)
            return folder
    folder = Path(tempfile.mkdtemp(prefix="acgs-db-", dir=base))
    folder.chmod(0o711)  # postgres must enter it to reach its data folder
    staged = project_root / f".{POINTER}.{secrets.token_hex(6)}"
    _write_new_file(staged, f"{folder}\n")
    os.replace(staged, pointer)
    return folder


@dataclass(frozen=True)
class ClusterStatus:
    """What ``dev-db status`` reports."""

    initialized: bool
    running: bool
    url: str | None
    data_dir: Path


class DevCluster:
    """A private PostgreSQL cluster in a folder, started and stopped with ``pg_ctl``."""

    def __init__(
        self,
        root: Path,
        *,
        bindir: Path | None = None,
        config: dict[str, str] | None = None,
    ) -> None:
        self.bindir = bindir or find_bindir()
        self._config = {**SERVER_CONFIG, **(config or {})}
        self._account = pwd.getpwnam(RUN_AS) if os.geteuid() == 0 else None
        self._requested_root = root.resolve()
        self.root = self._usable_root(self._requested_root)

    # -- layout -------------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self.root / "pgdata"

    @property
    def log_file(self) -> Path:
        return self.root / "postgres.log"

    @property
    def _port_file(self) -> Path:
        return self.root / "port"

    @property
    def passfile(self) -> Path:
        """The libpq password file holding the superuser's password (mode 0600)."""
        return self.root / PASSFILE

    def _usable_root(self, root: Path) -> Path:
        """Under root, fall back to a private folder in /var/tmp when the project folder is
        closed to ``postgres`` (see :func:`fallback_root`)."""
        if self._account is None:
            return root
        gids = {self._account.pw_gid, *os.getgrouplist(RUN_AS, self._account.pw_gid)}
        if _traversable(root.parent, self._account.pw_uid, gids):
            return root
        return fallback_root(root)

    # -- running programs ---------------------------------------------------------------

    def _run(self, args: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, object] = {}
        if self._account is not None:
            kwargs = {
                "user": self._account.pw_uid,
                "group": self._account.pw_gid,
                "extra_groups": [],
            }
        return subprocess.run(  # type: ignore[call-overload,no-any-return]
            list(args), capture_output=True, text=True, check=check, cwd="/", **kwargs
        )

    def _bin(self, name: str) -> str:
        return str(self.bindir / name)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise init/start/stop between processes that share the folder."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        with _flock(self.root / "lock"):
            yield

    # -- life cycle ---------------------------------------------------------------------

    def is_initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def _refuse_unprotected(self) -> None:
        """Refuse a cluster made by an earlier acgs-db: trust authentication, no password.

        Converting it in place (start it open, set a password, rewrite pg_hba.conf, reload)
        would run a trust server once more and edit a configuration the user may have
        changed, with half-converted states to handle when a step fails. Its data is a
        disposable development sample, so refusing with the command that removes it is both
        safer and simpler.
        """
        if self.is_initialized() and not self.passfile.exists():
            raise ConfigurationError(
                f"{self.root} holds a development cluster made by an earlier acgs-db with trust"
                " authentication (any local user could connect to it as superuser). Stop it and"
                f" delete it (its data is a disposable sample): acgs-db dev-db stop && rm -rf"
                f" {self.root}; the next command creates a password-protected cluster."
            )

    def init(self) -> None:
        """Run ``initdb`` (SCRAM authentication, loopback only, a generated password kept in
        the password file) and write the server settings."""
        check_extensions(self.bindir)
        with self._locked():
            if self.is_initialized():
                return
            # under root, postgres must enter the folder to reach its data folder and its log
            self.root.chmod(0o711 if self._account is not None else 0o700)
            pwfile = self.root / "pwfile"
            for leftover in (self.passfile, pwfile):  # from an initdb that failed
                leftover.unlink(missing_ok=True)
            password = secrets.token_urlsafe(32)
            _write_new_file(self.passfile, pgpass_line(SUPERUSER, password))
            _write_new_file(pwfile, password + "\n", owner=self._account)  # read by initdb
            try:
                self.data_dir.mkdir(mode=0o700, exist_ok=True)
                if self._account is not None:
                    os.chown(self.data_dir, self._account.pw_uid, self._account.pw_gid)
                result = self._run(
                    [
                        self._bin("initdb"),
                        "-D",
                        str(self.data_dir),
                        "-U",
                        SUPERUSER,
                        "--auth=scram-sha-256",
                        f"--pwfile={pwfile}",
                        "--encoding=UTF8",
                        "--locale=C.UTF-8",
                        "--no-instructions",
                    ],
                    check=False,
                )
            finally:
                pwfile.unlink(missing_ok=True)
            if result.returncode != 0:
                self.passfile.unlink(missing_ok=True)
                raise ConfigurationError(f"initdb failed: {result.stderr.strip()}")
            lines = "".join(f"{key} = {value}\n" for key, value in self._config.items())
            _write_existing_file(
                self.data_dir / "postgresql.conf",
                "\n# acgs-db development cluster\n" + lines,
                append=True,
            )
            _write_existing_file(self.data_dir / "pg_hba.conf", HBA_CONF, append=False)
            self._port_file.write_text(str(free_port()))

    def _prepare_log(self) -> None:
        """Under root the folder is root's: give ``postgres`` a log file it may write."""
        if self._account is not None:
            with contextlib.suppress(FileExistsError):
                _write_new_file(self.log_file, "", owner=self._account)

    def postmaster_pid(self) -> int | None:
        """PID of the running postmaster, or ``None`` when the cluster is down."""
        pidfile = self.data_dir / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        if _is_zombie(pid):  # killed, not yet reaped by its parent: it serves nothing
            return None
        return pid

    def is_running(self) -> bool:
        return self.postmaster_pid() is not None

    @property
    def port(self) -> int:
        return int(self._port_file.read_text())

    def admin_url(self, database: str = "postgres") -> str:
        """libpq URL of ``database`` as the superuser. It holds no password: it names the
        password file (``passfile``, read by libpq and asyncpg), so it may be printed."""
        self._refuse_unprotected()
        passfile = quote(str(self.passfile))
        return f"postgresql://{SUPERUSER}@{HOST}:{self.port}/{database}?passfile={passfile}"

    def url(self) -> str:
        """libpq URL of the cluster's ``acgs`` database."""
        return self.admin_url(DATABASE)

    def start(self) -> str:
        """Initialise if needed, start the server, create the ``acgs`` database; return its URL."""
        self._refuse_unprotected()
        if not self.is_initialized():
            self.init()
        with self._locked():
            if not self.is_running():
                self._wait_for_reaping()
                self._prepare_log()
                if _port_in_use(self.port):
                    self._port_file.write_text(str(free_port()))
                result = self._run(
                    [
                        self._bin("pg_ctl"),
                        "-D",
                        str(self.data_dir),
                        "-l",
                        str(self.log_file),
                        "-o",
                        f"-p {self.port}",
                        "-w",
                        "-t",
                        "120",
                        "start",
                    ],
                    check=False,
                )
                if result.returncode != 0:
                    tail = self._log_tail()
                    raise ConfigurationError(
                        f"PostgreSQL did not start: {result.stdout.strip()} {result.stderr.strip()}"
                        f"\n{tail}"
                    )
            self._ensure_database()
        return self.url()

    def _ensure_database(self) -> None:
        import psycopg
        from psycopg import sql

        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(self.admin_url(), autocommit=True, connect_timeout=5) as conn:
                    exists = conn.execute(
                        load_sql("devdb/database_exists"), {"database": DATABASE}
                    ).fetchone()
                    if not exists:
                        create = sql.SQL(load_sql("devdb/create_database"))
                        conn.execute(create.format(database=sql.Identifier(DATABASE)))
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server if it runs."""
        with self._locked():
            if not self.is_running():
                return
            self._run(
                [
                    self._bin("pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-m",
                    mode,
                    "-w",
                    "-t",
                    "120",
                    "stop",
                ],
                check=False,
            )

    def kill(self) -> None:
        """SIGKILL the postmaster and wait until its backends are gone (for fault tests)."""
        pid = self.postmaster_pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if not self._backends_alive():
                break
            time.sleep(0.1)
        self._wait_for_reaping()

    def _wait_for_reaping(self, timeout: float = 30.0) -> None:
        """Wait until the PID in postmaster.pid has left the process table: a killed
        postmaster stays a zombie until its parent reaps it, and while it does PostgreSQL
        takes the lock file for a live server and refuses to start."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return
        deadline = time.monotonic() + timeout
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)

    def _backends_alive(self) -> bool:
        """True while any process still runs inside the data folder (orphaned backends)."""
        target = str(self.data_dir)
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if os.readlink(entry / "cwd") == target:
                        return True
        return False

    def destroy(self) -> None:
        """Stop the server and delete its folder (and the pointer to a fallback folder)."""
        self.stop(mode="immediate")
        shutil.rmtree(self.root, ignore_errors=True)
        if self.root != self._requested_root:
            for name in (POINTER, "lock"):
                (self._requested_root / name).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                self._requested_root.rmdir()

    def status(self) -> ClusterStatus:
        running = self.is_running()
        return ClusterStatus(
            initialized=self.is_initialized(),
            running=running,
            url=self.url() if running and self.passfile.exists() else None,
            data_dir=self.data_dir,
        )

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


REPLICAS_DIR = "replicas"
"""Folder of the standbys, in the primary's folder: ``replicas/<K>``."""


@dataclass(frozen=True)
class StandbyStatus:
    """What ``dev-db status`` reports of a standby."""

    index: int
    running: bool
    url: str | None
    data_dir: Path
    behind_bytes: int | None
    """WAL the standby has still to replay; None when the primary sees no stream from it."""
    lag_seconds: float | None


class StandbyCluster(DevCluster):
    """Streaming standby ``index`` of a :class:`DevCluster`: a ``pg_basebackup -R`` copy of
    its data (a physical replication slot of its own, so the primary keeps the WAL it has not
    received), on a loopback port of its own, SCRAM as ``postgres`` with the primary's
    password: clients use the primary's password file; the server reads a copy it owns."""

    def __init__(self, primary: DevCluster, index: int) -> None:
        if index < 0:
            raise ConfigurationError(f"a replica number is 0 or more, got {index}")
        self.primary = primary
        self.index = index
        super().__init__(primary.root / REPLICAS_DIR / str(index), bindir=primary.bindir, config={})

    @property
    def passfile(self) -> Path:
        return self.primary.passfile

    @property
    def _server_passfile(self) -> Path:
        """The password file the standby's server (and pg_basebackup) reads: its own copy."""
        return self.root / PASSFILE

    @property
    def slot(self) -> str:
        return f"acgs_replica_{self.index}"

    def url(self) -> str:
        """libpq URL of the standby's ``acgs`` database (read-only)."""
        return self.admin_url(DATABASE)

    def init(self) -> None:
        """Copy the running primary with ``pg_basebackup -R`` through a new replication slot."""
        if not self.primary.is_running():
            raise ConfigurationError("the primary must run before a standby can copy it")
        with self._locked():
            if self.is_initialized():
                return
            self.root.chmod(0o711 if self._account is not None else 0o700)
            self._server_passfile.unlink(missing_ok=True)
            _write_new_file(
                self._server_passfile, self.primary.passfile.read_text(), owner=self._account
            )
            self._drop_slot()
            if self.data_dir.exists():  # a copy that failed half-way
                shutil.rmtree(self.data_dir)
            self.data_dir.mkdir(mode=0o700)
            if self._account is not None:
                os.chown(self.data_dir, self._account.pw_uid, self._account.pw_gid)
            conninfo = (
                f"host={HOST} port={self.primary.port} user={SUPERUSER}"
                f" passfile={self._server_passfile} application_name={self.slot}"
            )
            result = self._run(
                [
                    self._bin("pg_basebackup"),
                    "-D",
                    str(self.data_dir),
                    "-d",
                    conninfo,
                    "-R",
                    "-C",
                    "-S",
                    self.slot,
                    "-X",
                    "stream",
                    "-c",
                    "fast",
                    "-w",
                ],
                check=False,
            )
            if result.returncode != 0:
                raise ConfigurationError(f"pg_basebackup failed: {result.stderr.strip()}")
            self._port_file.write_text(str(free_port()))

    def _ensure_database(self) -> None:
        """Wait until the standby accepts connections (it cannot create anything)."""
        import psycopg

        deadline = time.monotonic() + 60
        while True:
            try:
                with psycopg.connect(self.url(), autocommit=True, connect_timeout=5):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def _drop_slot(self) -> None:
        """Drop this standby's slot on the primary, unless a standby streams from it."""
        import psycopg

        from acgs_db.resources import load_sql

        if not self.primary.is_running():
            return
        with psycopg.connect(self.primary.admin_url(), autocommit=True) as conn:
            conn.execute(load_sql("replicas/drop_slot"), {"slot": self.slot})

    def destroy(self) -> None:
        """Stop the standby, drop its slot (the primary stops keeping WAL for it), delete it."""
        self.stop(mode="immediate")
        self._drop_slot()
        shutil.rmtree(self.root, ignore_errors=True)

    def replica_status(self, streams: dict[str, tuple[int | None, float | None]]) -> StandbyStatus:
        """This standby's status, with its lag from the primary's ``streams``
        (:func:`replication_streams`)."""
        running = self.is_running()
        behind, lag = streams.get(self.slot, (None, None))
        return StandbyStatus(
            index=self.index,
            running=running,
            url=self.url() if running and self.is_initialized() else None,
            data_dir=self.data_dir,
            behind_bytes=behind,
            lag_seconds=lag,
        )


def standbys(primary: DevCluster) -> list[StandbyCluster]:
    """The standbys made for ``primary`` so far, by number."""
    folder = primary.root / REPLICAS_DIR
    numbers = (
        sorted(int(p.name) for p in folder.glob("*") if p.name.isdigit()) if folder.exists() else []
    )
    return [StandbyCluster(primary, number) for number in numbers]


def replication_streams(primary: DevCluster) -> dict[str, tuple[int | None, float | None]]:
    """On a running primary: each streaming standby's WAL bytes still to replay and delay in
    seconds, by application name (the slot name: ``acgs_replica_<K>``)."""
    import psycopg

    from acgs_db.resources import load_sql

    if not primary.is_running():
        return {}
    with psycopg.connect(primary.admin_url(), autocommit=True) as conn:
        rows = conn.execute(load_sql("replicas/dev_replication")).fetchall()
    return {
        str(name): (
            None if behind is None else int(behind),
            None if lag is None else float(lag),
        )
        for name, behind, lag in rows
    }


def start_with_standbys(primary: DevCluster, replicas: int) -> tuple[str, list[str]]:
    """Start ``primary`` and its standbys 0 to ``replicas - 1`` (made when missing); return
    the URLs."""
    url = primary.start()
    return url, [StandbyCluster(primary, k).start() for k in range(replicas)]


def stop_with_standbys(primary: DevCluster) -> None:
    """Stop every standby of ``primary``, then the primary."""
    for standby in standbys(primary):
        standby.stop()
    primary.stop()


def database_url(settings: Settings) -> str:
    """The configured ``ACGS_DATABASE_URL``, else the embedded cluster's URL (started if needed)."""
    if settings.database_url:
        return settings.database_url
    return DevCluster(settings.dev_root).start()
