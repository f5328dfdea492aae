"""The embedded development database: a private PostgreSQL cluster the toolkit starts itself.

When ``ACGS_DATABASE_URL`` is unset, commands that need a database use this cluster:
``initdb`` into ``.acgs/pgdata`` (gitignored), a free loopback port, pg_partman available
and pg_cron preloaded. PostgreSQL refuses to run as root, so under root the cluster runs
as the unprivileged ``postgres`` account that Debian's package creates.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from acgs_db.errors import ConfigurationError
from acgs_db.settings import Settings

DEBIAN_PACKAGES = "postgresql-15 postgresql-15-partman postgresql-15-cron"
DATABASE = "acgs"
SUPERUSER = "postgres"
RUN_AS = "postgres"
_REQUIRED_BINARIES = ("initdb", "pg_ctl", "postgres")
_REQUIRED_EXTENSIONS = {"pg_partman": "partman", "pg_cron": "cron"}

# Written into postgresql.conf at initdb. Tuned for a 2-core, 24 GiB development machine;
# work_mem stays at PostgreSQL's default so that the figures resemble a stock server.
SERVER_CONFIG = {
    "listen_addresses": "'127.0.0.1'",
    "unix_socket_directories": "''",
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
        self.root = self._usable_root(root.resolve())

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

    def _usable_root(self, root: Path) -> Path:
        """Under root, fall back to /var/tmp when the project folder is closed to ``postgres``."""
        if self._account is None:
            return root
        gids = {self._account.pw_gid, *os.getgrouplist(RUN_AS, self._account.pw_gid)}
        if _traversable(root.parent, self._account.pw_uid, gids):
            return root
        digest = hashlib.sha256(str(root).encode()).hexdigest()[:12]
        return Path("/var/tmp") / f"acgs-db-{digest}"

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
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _chown(self, path: Path) -> None:
        if self._account is None:
            return
        uid, gid = self._account.pw_uid, self._account.pw_gid
        os.chown(path, uid, gid)
        for dirpath, dirnames, filenames in os.walk(path):
            for name in (*dirnames, *filenames):
                os.chown(os.path.join(dirpath, name), uid, gid)

    # -- life cycle ---------------------------------------------------------------------

    def is_initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def init(self) -> None:
        """Run ``initdb`` (trust authentication, loopback only) and write the server settings."""
        check_extensions(self.bindir)
        with self._locked():
            if self.is_initialized():
                return
            self.root.mkdir(parents=True, exist_ok=True)
            self._chown(self.root)
            result = self._run(
                [
                    self._bin("initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    SUPERUSER,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                    "--no-instructions",
                ],
                check=False,
            )
            if result.returncode != 0:
                raise ConfigurationError(f"initdb failed: {result.stderr.strip()}")
            lines = "".join(f"{key} = {value}\n" for key, value in self._config.items())
            with open(self.data_dir / "postgresql.conf", "a") as conf:
                conf.write("\n# acgs-db development cluster\n" + lines)
            self._port_file.write_text(str(free_port()))

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
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def url(self) -> str:
        """libpq URL of the cluster's ``acgs`` database."""
        return self.admin_url(DATABASE)

    def start(self) -> str:
        """Initialise if needed, start the server, create the ``acgs`` database; return its URL."""
        if not self.is_initialized():
            self.init()
        with self._locked():
            if not self.is_running():
                self._wait_for_reaping()
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

        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(self.admin_url(), autocommit=True, connect_timeout=5) as conn:
                    exists = conn.execute(
                        "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)
                    ).fetchone()
                    if not exists:
                        conn.execute(f'CREATE DATABASE "{DATABASE}"')
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
        """Stop the server and delete its folder."""
        self.stop(mode="immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def status(self) -> ClusterStatus:
        running = self.is_running()
        return ClusterStatus(
            initialized=self.is_initialized(),
            running=running,
            url=self.url() if running else None,
            data_dir=self.data_dir,
        )

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def database_url(settings: Settings) -> str:
    """The configured ``ACGS_DATABASE_URL``, else the embedded cluster's URL (started if needed)."""
    if settings.database_url:
        return settings.database_url
    return DevCluster(settings.dev_root).start()
